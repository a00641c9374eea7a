"""A webhook endpoint's change (``PATCH /api/v1/webhooks/{id}``, the dashboard's toggle) writes only
the fields it changes, on the endpoint's locked row: a toggle made between a ``PATCH``'s read of
the endpoint and its write stays. (It saved the whole row it had read: an endpoint an admin had
just disabled was enabled again by a description change.)"""

from __future__ import annotations

import pytest

from routerhub.domain import NotFound
from routerhub.errors import http_of
from tests.factories import dashboard_client, tenants_make
from webhooks.models import WebhookEndpoint
from webhooks.services import webhook_endpoint_create, webhook_endpoint_update

pytestmark = pytest.mark.django_db


def _endpoint(tenants) -> WebhookEndpoint:
    return webhook_endpoint_create(
        created_by=None,
        organization=tenants.organization,
        url="https://hooks.example.com/a",
        events=["router.drift"],
    ).endpoint


def test_a_change_keeps_a_toggle_made_after_the_endpoint_was_read() -> None:
    tenants = tenants_make()
    endpoint = _endpoint(tenants)
    as_read = WebhookEndpoint.objects.get(pk=endpoint.pk)  # the PATCH's read
    admin = dashboard_client(tenants.owner, tenants.organization)
    assert admin.post(f"/dashboard/webhooks/{endpoint.pk}/toggle").status_code == 302  # disabled

    written = webhook_endpoint_update(
        endpoint=as_read, changes={"description": "billing"}, actor=None
    )

    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.description) == (False, "billing")
    assert (written.enabled, written.description) == (False, "billing")


def test_a_change_to_an_endpoint_deleted_after_it_was_read_is_a_404() -> None:
    endpoint = _endpoint(tenants_make())
    as_read = WebhookEndpoint.objects.get(pk=endpoint.pk)  # the PATCH's (or toggle's) read
    WebhookEndpoint.objects.filter(pk=endpoint.pk).delete()  # a delete racing it

    with pytest.raises(NotFound) as gone:
        webhook_endpoint_update(endpoint=as_read, changes={"description": "billing"}, actor=None)

    assert http_of(gone.value)[0] == 404
    assert gone.value.param == "id"
