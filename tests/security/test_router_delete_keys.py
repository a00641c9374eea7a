"""A router is not deleted while a key not revoked is allowed ``router/<slug>`` or a RouteLLM name
of it: deleted, a router made later with the same slug would silently be that key's. The 409
names the keys (prefix and name), as a rename's does; once they are changed or revoked the delete
goes through."""

from __future__ import annotations

import pytest

from accounts.key_lineage import api_key_revoke
from accounts.models import ApiKey, KeyScope
from tests.factories import Tenants, key_client, key_make
from training.models import Router

pytestmark = pytest.mark.django_db


def test_a_router_named_by_keys_is_not_deleted_until_they_change(tenants: Tenants) -> None:
    organization = tenants.organization
    Router.objects.create(organization=organization, slug="support", candidates=["a", "b"])
    key_make(organization, name="support bot", allowed_models=["router/support"])
    key_make(organization, name="routellm bot", allowed_models=["router-support-0.5"])
    key_make(organization, name="other bot", allowed_models=["router/supportive"])
    bot, routellm_bot = ApiKey.objects.filter(
        organization=organization, name__in=["support bot", "routellm bot"]
    ).order_by("pk")
    manage = key_client(key_make(organization, scope=KeyScope.MANAGE))

    refused = manage.delete("/api/v1/routers/support")

    assert refused.status_code == 409, refused.content
    error = refused.json()["error"]
    assert error["param"] == "slug" and bot.prefix in error["message"]
    assert "other bot" not in error["message"] and "before deleting" in error["message"]
    assert error["metadata"]["keys"] == [
        {"prefix": bot.prefix, "name": "support bot"},
        {"prefix": routellm_bot.prefix, "name": "routellm bot"},
    ]
    assert Router.objects.filter(organization=organization, slug="support").exists()
    api_key_revoke(key=bot)
    still = manage.delete("/api/v1/routers/support")
    assert still.status_code == 409 and still.json()["error"]["metadata"]["keys"] == [
        {"prefix": routellm_bot.prefix, "name": "routellm bot"}
    ]
    changed = manage.patch(
        f"/api/v1/keys/{routellm_bot.pk}", {"allowed_models": ["openai/x"]}, format="json"
    )
    assert changed.status_code == 200, changed.content
    deleted = manage.delete("/api/v1/routers/support")
    assert deleted.status_code == 204, deleted.content
    assert not Router.objects.filter(organization=organization, slug="support").exists()
