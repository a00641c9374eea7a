"""Playground and provider-keys dashboard pages."""

from __future__ import annotations

import pytest

from accounts.models import KeyScope
from routing.models import Provider, ProviderKey
from tests.factories import dashboard_client, key_client, key_make
from training.models import Router

pytestmark = pytest.mark.django_db


def test_playground_lists_models_routers_and_the_platform_router(tenants):
    Router.objects.create(
        organization=tenants.organization, slug="support", name="S", candidates=["a", "b"]
    )

    html = (
        dashboard_client(tenants.member, tenants.organization)
        .get("/dashboard/playground/")
        .content.decode()
    )

    assert 'value="router/support"' in html and "(not trained yet)" in html
    assert 'value="router/auto"' in html
    assert 'data-chat-url="/dashboard/playground/chat"' in html and "playground.js" in html


def test_admin_saves_a_provider_key_that_is_never_shown_again(tenants):
    Provider.objects.create(
        slug="openai-test", name="OpenAI", api_style="openai", base_url="http://127.0.0.1:9"
    )
    client = dashboard_client(tenants.admin, tenants.organization)
    secret = "sk-very-secret-value-1234"

    saved = client.post(
        "/dashboard/provider-keys/", {"provider": "openai-test", "secret": secret, "name": "mine"}
    )
    page = client.get("/dashboard/provider-keys/").content.decode()

    assert saved.status_code == 302
    key = ProviderKey.objects.get(organization=tenants.organization)
    assert key.last4 == "1234" and secret not in page and "…1234" in page
    assert secret.encode() not in bytes(key.encrypted_secret)


def test_a_too_short_provider_key_is_refused_next_to_the_field(tenants):
    Provider.objects.create(
        slug="openai-test", name="OpenAI", api_style="openai", base_url="http://127.0.0.1:9"
    )

    page = dashboard_client(tenants.admin, tenants.organization).post(
        "/dashboard/provider-keys/", {"provider": "openai-test", "secret": "short"}
    )

    assert page.status_code == 200
    # The API's own rule and message (ProviderKeyCreateInput checks the form, routerhub.api_forms)
    too_short = "This key looks too short: provider keys are at least 8 characters."
    assert too_short in page.content.decode()
    manager = key_client(
        key_make(tenants.organization, scope=KeyScope.MANAGE, created_by=tenants.admin)
    )
    api = manager.post(
        "/api/v1/provider-keys", {"provider": "openai-test", "secret": "short"}, "json"
    )
    assert api.status_code == 400 and too_short in api.content.decode()
    assert not ProviderKey.objects.exists()


def test_members_cannot_manage_provider_keys(tenants):
    page = dashboard_client(tenants.member, tenants.organization).get("/dashboard/provider-keys/")

    assert page.status_code == 403


def test_playground_marks_models_without_credentials_as_not_callable(tenants, settings):
    from routing.services import catalog_sync, provider_key_create
    from tests.routing.world import endpoint, model, provider

    settings.PROVIDER_API_KEYS = {"PLATFORM_TEST_KEY": "sk-platform"}
    url = "http://127.0.0.1:9"
    catalog_sync(
        data={
            "providers": [
                provider("keyless", "openai", url, "KEYLESS_TEST_KEY"),
                provider("platform", "openai", url, "PLATFORM_TEST_KEY"),
                provider("own", "openai", url, "OWN_TEST_KEY"),
                provider("open", "openai", url, ""),
            ],
            "models": [model(m) for m in ("t/keyless", "t/platform", "t/own", "t/open")],
            "endpoints": [
                endpoint("t/keyless", "keyless", "x"),
                endpoint("t/platform", "platform", "x"),
                endpoint("t/own", "own", "x"),
                endpoint("t/open", "open", "x"),
            ],
        }
    )
    provider_key_create(
        organization=tenants.organization,
        provider=Provider.objects.get(slug="own"),
        secret="sk-own-secret-1234",
    )

    html = (
        dashboard_client(tenants.member, tenants.organization)
        .get("/dashboard/playground/")
        .content.decode()
    )

    for callable_model in ("t/platform", "t/own", "t/open"):
        assert f'<option value="{callable_model}" >' in html, callable_model
    assert '<option value="t/keyless" disabled>t/keyless (no provider key)</option>' in html
    assert "/dashboard/provider-keys/" in html
