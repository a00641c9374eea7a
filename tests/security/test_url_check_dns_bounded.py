"""Saving a provider key's ``base_url`` or a webhook URL resolves its host inside the web request.
The lookup was unbounded: a slow or blackholed name held the worker for the resolver's full
timeout (under ASGI every sync view of that worker), and many such saves could hold them all.
Now it runs in ``routing.egress``' bounded resolver pool and is abandoned after
``URL_CHECK_DNS_TIMEOUT_SECONDS``: a 400 saying so, nothing saved. Each answer below arrives
while the fake resolver is still blocked, which the old code could not do."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import KeyScope
from routing.egress import RESOLVER_THREADS
from routing.models import ProviderKey
from routing.services import catalog_sync_file
from tests.factories import dashboard_client, key_client, key_make, tenants_make
from tests.security.stalling_resolver import STALLED, StallingResolver, resolver
from webhooks.models import WebhookEndpoint
from webhooks.services import webhook_endpoint_create

__all__ = ["resolver"]

pytestmark = pytest.mark.django_db

DEADLINE = 0.3
MESSAGE = f"could not resolve {STALLED} within {DEADLINE:g} s; check the name or try again"
BASE_URL = f"https://{STALLED}/v1"
HOOK_URL = f"https://{STALLED}/hooks"
KEY = {"provider": "openai", "secret": "sk-own-secret-1234"}


@pytest.fixture
def checked(settings: Any) -> Any:
    """Private hosts refused (so the host is resolved) and a short lookup deadline."""
    settings.ALLOW_PRIVATE_PROVIDER_URLS = False
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    settings.URL_CHECK_DNS_TIMEOUT_SECONDS = DEADLINE
    catalog_sync_file()
    return tenants_make()


def manager(tenants: Any) -> Any:
    return key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))


def assert_refused_while_stalled(response: Any, param: str, resolver: StallingResolver) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == param and MESSAGE in error["message"]
    assert resolver.entered >= 1 and not resolver.finished.is_set()  # abandoned, still blocked


def test_api_provider_key_with_a_stalled_host_is_refused_within_the_deadline(
    checked: Any, resolver: StallingResolver
) -> None:
    response = manager(checked).post("/api/v1/provider-keys", KEY | {"base_url": BASE_URL}, "json")

    assert_refused_while_stalled(response, "base_url", resolver)
    assert not ProviderKey.objects.exists()


def test_api_webhook_create_and_update_with_a_stalled_host_are_refused(
    checked: Any, resolver: StallingResolver
) -> None:
    client = manager(checked)
    kept = webhook_endpoint_create(organization=checked.organization, url="https://8.8.8.8/h",
                                   events=["router.drift"]).endpoint  # fmt: skip

    created = client.post("/api/v1/webhooks", {"url": HOOK_URL, "events": ["router.drift"]},
                          format="json")  # fmt: skip
    updated = client.patch(f"/api/v1/webhooks/{kept.pk}", {"url": HOOK_URL, "enabled": False},
                           format="json")  # fmt: skip

    assert_refused_while_stalled(created, "url", resolver)
    assert_refused_while_stalled(updated, "url", resolver)
    kept.refresh_from_db()
    assert (kept.url, kept.enabled) == ("https://8.8.8.8/h", True)  # nothing of the PATCH saved
    assert WebhookEndpoint.objects.count() == 1


def test_dashboard_forms_with_a_stalled_host_show_the_message_and_save_nothing(
    checked: Any, resolver: StallingResolver
) -> None:
    client = dashboard_client(checked.admin, checked.organization)

    key = client.post("/dashboard/provider-keys/", KEY | {"base_url": BASE_URL})
    hook = client.post("/dashboard/webhooks/", {"url": HOOK_URL, "events": ["training.failed"]})

    for page in (key, hook):  # the dashboard's refusal: the form again, the error by its field
        assert page.status_code == 200 and MESSAGE in page.content.decode()
    assert not resolver.finished.is_set()
    assert not ProviderKey.objects.exists() and not WebhookEndpoint.objects.exists()


def test_stalled_saves_hold_at_most_the_pools_threads(
    checked: Any, resolver: StallingResolver
) -> None:
    client = manager(checked)

    answers = [
        client.post("/api/v1/provider-keys", KEY | {"base_url": BASE_URL}, "json")
        for _ in range(RESOLVER_THREADS + 2)
    ]

    for answer in answers:
        assert_refused_while_stalled(answer, "base_url", resolver)
    # The saves past the pool's size waited for a thread and were abandoned before starting.
    assert resolver.entered == RESOLVER_THREADS
