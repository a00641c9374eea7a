"""A webhook endpoint does not outlive its creator's membership: removing the admin who made it
disables it (no further delivery reaches its URL, pending ones included), another admin's endpoint
keeps receiving, and an admin who re-enables it becomes the one who answers for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import KeyScope, Membership, User
from accounts.services import membership_remove
from routerhub.domain import NotPermitted
from tests.factories import dashboard_client, key_client, key_make, tenants_make
from tests.webhooks.receiver import Receiver
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.services import webhook_endpoint_create, webhook_endpoint_update, webhook_event_emit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

MakeReceiver = Callable[[list[int]], Receiver]
EVENT = "budget.threshold"


def endpoint_by(person: User, organization: Any, url: str) -> tuple[Any, int]:
    """An endpoint created through the API with ``person``'s management key: (client, id)."""
    client = key_client(key_make(organization, scope=KeyScope.MANAGE, created_by=person))
    response = client.post("/api/v1/webhooks", {"url": url, "events": [EVENT]}, format="json")
    assert response.status_code == 201, response.json()
    return client, response.json()["id"]


def remove(person: User, organization: Any) -> None:
    membership = Membership.objects.get(user=person, organization=organization)
    membership_remove(organization=organization, membership_id=membership.pk)


def test_removing_the_creator_disables_their_endpoints_and_nothing_more_reaches_them(
    receiver_factory: MakeReceiver, django_capture_on_commit_callbacks: Any
) -> None:
    tenants = tenants_make()
    theirs, kept = receiver_factory([200]), receiver_factory([200])
    _, their_id = endpoint_by(tenants.admin, tenants.organization, theirs.url)
    _, kept_id = endpoint_by(tenants.owner, tenants.organization, kept.url)
    with django_capture_on_commit_callbacks(execute=False) as queued:  # pending, not yet sent
        webhook_event_emit(tenants.organization.pk, EVENT, {"percent": 50})

    remove(tenants.admin, tenants.organization)
    for callback in queued:  # the pending deliveries' tasks run after the removal
        callback()
    with django_capture_on_commit_callbacks(execute=True):
        later = webhook_event_emit(tenants.organization.pk, EVENT, {"percent": 80})

    assert theirs.received == []  # failed on the old code: both events reached the removed admin
    assert len(kept.received) == 2
    assert [d.endpoint_id for d in later] == [kept_id]
    pending = WebhookDelivery.objects.get(endpoint_id=their_id)
    assert (pending.status, pending.error) == (DeliveryStatus.FAILED, "the endpoint was disabled")
    endpoint = WebhookEndpoint.objects.get(pk=their_id)
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "creator_removed")
    assert endpoint.created_by_id == tenants.admin.pk
    assert WebhookEndpoint.objects.get(pk=kept_id).enabled


def test_an_admin_re_enabling_it_becomes_its_creator_and_it_receives_again(
    receiver_factory: MakeReceiver, django_capture_on_commit_callbacks: Any
) -> None:
    tenants = tenants_make()
    receiver = receiver_factory([200])
    _, api_id = endpoint_by(tenants.admin, tenants.organization, receiver.url)
    _, page_id = endpoint_by(tenants.admin, tenants.organization, receiver.url + "/page")
    owner, _ = endpoint_by(tenants.owner, tenants.organization, receiver.url + "/owner")
    remove(tenants.admin, tenants.organization)

    patched = owner.patch(f"/api/v1/webhooks/{api_id}", {"enabled": True}, format="json")
    page = dashboard_client(tenants.owner, tenants.organization)
    toggled = page.post(f"/dashboard/webhooks/{page_id}/toggle")
    with django_capture_on_commit_callbacks(execute=True):
        webhook_event_emit(tenants.organization.pk, EVENT, {"percent": 50})

    assert patched.status_code == 200 and toggled.status_code == 302
    body = patched.json()
    assert (body["enabled"], body["disabled_reason"]) == (True, None)
    assert body["created_by"] == tenants.owner.email
    for endpoint in WebhookEndpoint.objects.filter(pk__in=[api_id, page_id]):
        assert (endpoint.enabled, endpoint.created_by_id) == (True, tenants.owner.pk)
        assert endpoint.disabled_reason == ""
    assert len(receiver.received) == 3


def test_the_api_and_dashboard_show_who_created_it_and_why_it_was_disabled() -> None:
    tenants = tenants_make()
    owner, _ = endpoint_by(tenants.owner, tenants.organization, "https://hooks.example.com/o")
    endpoint_by(tenants.admin, tenants.organization, "https://hooks.example.com/a")
    remove(tenants.admin, tenants.organization)

    listed = owner.get("/api/v1/webhooks").json()["results"]
    page = dashboard_client(tenants.owner, tenants.organization).get("/dashboard/webhooks/")

    shown = {
        row["url"]: (row["created_by"], row["enabled"], row["disabled_reason"]) for row in listed
    }
    assert shown == {
        "https://hooks.example.com/o": (tenants.owner.email, True, None),
        "https://hooks.example.com/a": (tenants.admin.email, False, "creator_removed"),
    }
    html = page.content.decode()
    assert tenants.admin.email in html
    assert "Its creator was removed from the organization" in html


def test_whoever_changes_the_url_answers_for_it() -> None:
    tenants = tenants_make()
    _, owners_id = endpoint_by(tenants.owner, tenants.organization, "https://hooks.example.com/o")
    admin = key_client(
        key_make(tenants.organization, scope=KeyScope.MANAGE, created_by=tenants.admin)
    )

    changed = admin.patch(
        f"/api/v1/webhooks/{owners_id}", {"url": "https://admin.example.net/x"}, format="json"
    )
    described = admin.patch(f"/api/v1/webhooks/{owners_id}", {"description": "x"}, format="json")
    remove(tenants.admin, tenants.organization)

    assert changed.json()["created_by"] == tenants.admin.email
    assert described.json()["created_by"] == tenants.admin.email
    endpoint = WebhookEndpoint.objects.get(pk=owners_id)
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "creator_removed")


def test_endpoints_without_a_recorded_creator_are_left_as_they_are() -> None:
    tenants = tenants_make()
    old = webhook_endpoint_create(
        created_by=None,
        organization=tenants.organization,
        url="https://hooks.example.com/old",
        events=[EVENT],
    ).endpoint  # as an endpoint created before webhooks 0004: created_by null

    remove(tenants.admin, tenants.organization)
    remove(tenants.member, tenants.organization)

    old.refresh_from_db()
    assert (old.enabled, old.created_by_id, old.disabled_reason) == (True, None, "")


def test_a_request_of_the_removed_admin_finishing_after_the_removal_changes_nothing() -> None:
    tenants = tenants_make()
    _, their_id = endpoint_by(tenants.admin, tenants.organization, "https://hooks.example.com/a")
    remove(tenants.admin, tenants.organization)  # their request authenticated just before this
    endpoint = WebhookEndpoint.objects.get(pk=their_id)

    with pytest.raises(NotPermitted):
        webhook_endpoint_update(endpoint=endpoint, changes={"enabled": True}, actor=tenants.admin)
    with pytest.raises(NotPermitted):
        webhook_endpoint_create(
            organization=tenants.organization,
            url="https://hooks.example.com/b",
            events=[EVENT],
            created_by=tenants.admin,
        )

    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "creator_removed")
    assert WebhookEndpoint.objects.filter(organization=tenants.organization).count() == 1


def test_re_sending_the_same_url_ties_an_endpoint_without_a_creator_to_its_sender() -> None:
    tenants = tenants_make()
    url = "https://hooks.example.com/old"
    old = webhook_endpoint_create(
        created_by=None, organization=tenants.organization, url=url, events=[EVENT]
    ).endpoint  # created_by null, as before webhooks 0004
    admin = key_client(
        key_make(tenants.organization, scope=KeyScope.MANAGE, created_by=tenants.admin)
    )

    resaved = admin.patch(f"/api/v1/webhooks/{old.pk}", {"url": url}, format="json")
    again = webhook_endpoint_update(endpoint=old, changes={"url": url}, actor=tenants.owner)
    remove(tenants.admin, tenants.organization)

    # Failed on the old code: the URL did not change, so created_by stayed null.
    assert resaved.status_code == 200 and resaved.json()["created_by"] == tenants.admin.email
    assert again.created_by_id == tenants.admin.pk  # a recorded creator changes with the URL only
    old.refresh_from_db()
    assert (old.enabled, old.disabled_reason) == (False, "creator_removed")
