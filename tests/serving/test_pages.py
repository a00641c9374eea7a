"""Playground and provider-keys dashboard pages."""

from __future__ import annotations

import pytest

from routing.models import Provider, ProviderKey
from tests.factories import dashboard_client
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
    assert 'id="pg-key"' in html and "playground.js" in html


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
    assert "looks too short" in page.content.decode()
    assert not ProviderKey.objects.exists()


def test_members_cannot_manage_provider_keys(tenants):
    page = dashboard_client(tenants.member, tenants.organization).get("/dashboard/provider-keys/")

    assert page.status_code == 403
