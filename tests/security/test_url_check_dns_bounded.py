"""Saving a provider key's ``base_url`` or a webhook URL resolves its host inside the web request.
The lookup was unbounded: a slow or blackholed name held the worker for the resolver's full
timeout (under ASGI every sync view of that worker), and many such saves could hold them all.
Now it runs in ``routing.resolvers``' bounded pool and is abandoned after
``URL_CHECK_DNS_TIMEOUT_SECONDS``: a 400 saying so, nothing saved. Each answer below arrives
while the fake resolver is still blocked, which the old code could not do. An abandoned lookup
still holds its thread until the system resolver gives up, so: an organization has one such
lookup at a time, a name that just timed out is not tried again, IP literals take no thread,
and a save that finds every thread busy is told to retry (503), not that its name is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import KeyScope
from routing.models import ProviderKey
from routing.resolvers import BUSY_RETRY_AFTER, RESOLVER_THREADS
from routing.services import catalog_sync_file
from tests.factories import (
    dashboard_client,
    key_client,
    key_make,
    organization_make,
    tenants_make,
)
from tests.security.stalling_resolver import STALLED, StallingResolver
from webhooks.models import WebhookEndpoint
from webhooks.services import webhook_endpoint_create

pytestmark = pytest.mark.django_db

DEADLINE = 0.3
AGAIN = f"could not resolve {STALLED} within {DEADLINE:g} s a moment ago; check the name or try"
BASE_URL = f"https://{STALLED}/v1"
HOOK_URL = f"https://{STALLED}/hooks"
OTHER = f"other.{STALLED}"  # the second organization's stalled name (one lookup each)
KEY = {"provider": "openai", "secret": "sk-own-secret-1234"}


@pytest.fixture
def checked(settings: Any) -> Any:
    """Private hosts refused (so the host is resolved) and a short lookup deadline."""
    settings.ALLOW_PRIVATE_PROVIDER_URLS = False
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    settings.URL_CHECK_DNS_TIMEOUT_SECONDS = DEADLINE
    catalog_sync_file()
    return tenants_make()


def manager_of(organization: Any) -> Any:
    return key_client(key_make(organization, scope=KeyScope.MANAGE))


def manager(tenants: Any) -> Any:
    return manager_of(tenants.organization)


def message(host: str = STALLED) -> str:
    return f"could not resolve {host} within {DEADLINE:g} s; check the name or try again"


def assert_refused_while_stalled(
    response: Any, param: str, resolver: StallingResolver, host: str = STALLED
) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == param and message(host) in error["message"]
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
    outsider = checked.outsider_organization
    kept = webhook_endpoint_create(created_by=None, organization=outsider, url="https://8.8.8.8/h",
                                   events=["router.drift"]).endpoint  # fmt: skip

    created = manager(checked).post("/api/v1/webhooks", {"url": HOOK_URL,
                                    "events": ["router.drift"]}, format="json")  # fmt: skip
    updated = manager_of(outsider).patch(f"/api/v1/webhooks/{kept.pk}", {
        "url": f"https://{OTHER}/hooks", "enabled": False}, format="json")  # fmt: skip

    assert_refused_while_stalled(created, "url", resolver)
    assert_refused_while_stalled(updated, "url", resolver, OTHER)
    kept.refresh_from_db()
    assert (kept.url, kept.enabled) == ("https://8.8.8.8/h", True)  # nothing of the PATCH saved
    assert WebhookEndpoint.objects.count() == 1


def test_dashboard_forms_with_a_stalled_host_show_the_message_and_save_nothing(
    checked: Any, resolver: StallingResolver
) -> None:
    client = dashboard_client(checked.admin, checked.organization)
    outsider = dashboard_client(checked.outsider, checked.outsider_organization)

    key = client.post("/dashboard/provider-keys/", KEY | {"base_url": BASE_URL})
    hook = outsider.post("/dashboard/webhooks/", {"url": f"https://{OTHER}/hooks",
                                                  "events": ["training.failed"]})  # fmt: skip

    # The dashboard's refusal: the form again, the error by its field.
    assert key.status_code == 200 and message() in key.content.decode()
    assert hook.status_code == 200 and message(OTHER) in hook.content.decode()
    assert not resolver.finished.is_set()
    assert not ProviderKey.objects.exists() and not WebhookEndpoint.objects.exists()


def stalled_url(n: int) -> str:
    return f"https://n{n}.{STALLED}/v1"


def save_key(client: Any, base_url: str) -> Any:
    return client.post("/api/v1/provider-keys", KEY | {"base_url": base_url}, "json")


def test_a_further_save_of_the_same_organization_waits_for_its_unfinished_lookup(
    checked: Any, resolver: StallingResolver
) -> None:
    """Before, each save took a thread of the pool: one organization's four stalled saves held
    them all (every other organization's saves then failed 400 blaming their own names)."""
    client = manager(checked)

    first = save_key(client, stalled_url(1))
    second = save_key(client, stalled_url(2))  # its earlier lookup still blocked

    assert_refused_while_stalled(first, "base_url", resolver, f"n1.{STALLED}")
    assert second.status_code == 429, second.content
    assert second.headers["Retry-After"] == str(BUSY_RETRY_AFTER)
    message = second.json()["error"]["message"]
    assert f"resolving n1.{STALLED}" in message and "has not finished" in message
    assert resolver.entered == 1  # the second save took no thread
    # Another organization is not held up by it.
    other = manager_of(organization_make(name="Other"))
    assert_refused_while_stalled(save_key(other, BASE_URL), "base_url", resolver)
    assert resolver.entered == 2 and not ProviderKey.objects.exists()


def test_a_name_that_just_timed_out_fails_at_once_without_a_thread(
    checked: Any, resolver: StallingResolver
) -> None:
    first = save_key(manager(checked), BASE_URL)
    again = save_key(manager_of(organization_make(name="Other")), BASE_URL)

    assert_refused_while_stalled(first, "base_url", resolver)
    assert again.status_code == 400, again.content
    assert AGAIN in again.json()["error"]["message"]
    assert resolver.entered == 1  # before: a second thread stalled on the same name


def fill_the_pool(resolver: StallingResolver) -> None:
    """Every resolver thread held by a stalled lookup, each of another organization."""
    for n in range(RESOLVER_THREADS):
        client = manager_of(organization_make(name=f"Stalled {n}"))
        answer = save_key(client, stalled_url(n))
        assert_refused_while_stalled(answer, "base_url", resolver, f"n{n}.{STALLED}")
    assert resolver.entered == RESOLVER_THREADS


def test_with_every_resolver_thread_stalled_an_ip_literal_still_saves(
    checked: Any, resolver: StallingResolver
) -> None:
    """Before: the literal waited for a thread like any name, and was refused 400 "could not
    resolve 8.8.8.8"."""
    fill_the_pool(resolver)

    saved = save_key(manager(checked), "https://8.8.8.8/v1")
    hook = manager(checked).post("/api/v1/webhooks", {"url": "https://[2001:4860:4860::8888]/h",
                                 "events": ["router.drift"]}, format="json")  # fmt: skip
    private = save_key(manager(checked), "http://0x7f.1/v1")  # 127.0.0.1, however spelled

    assert saved.status_code == 201, saved.content
    assert hook.status_code == 201, hook.content
    assert private.status_code == 400 and "127.0.0.1" in private.json()["error"]["message"]
    assert resolver.entered == RESOLVER_THREADS and not resolver.finished.is_set()


def test_with_every_resolver_thread_stalled_a_name_is_a_503_to_retry_not_a_400(
    checked: Any, resolver: StallingResolver
) -> None:
    """Before: the save waited for a thread, and was refused 400 blaming its own name."""
    fill_the_pool(resolver)

    answer = save_key(manager(checked), f"https://fine.{STALLED}/v1")

    assert answer.status_code == 503, answer.content
    assert answer.headers["Retry-After"] == str(BUSY_RETRY_AFTER)
    assert "resolver busy" in answer.json()["error"]["message"].lower()
    assert resolver.entered == RESOLVER_THREADS and not ProviderKey.objects.exists()
