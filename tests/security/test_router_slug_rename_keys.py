"""A router's slug is not renamed while a key not revoked is allowed ``router/<slug>`` or a
RouteLLM name of it (``router-<slug>-<threshold>``, ``-<P>%``): renamed, the router would be
refused to that key, and a router made later with the old slug would be served to it. The 409
names the keys (prefix and name); a revoked key does not hold it back."""

from __future__ import annotations

import pytest

from accounts.key_lineage import api_key_revoke
from accounts.models import ApiKey, KeyScope
from tests.factories import Tenants, key_client, key_make
from training.models import Router

pytestmark = pytest.mark.django_db


def test_a_slug_named_by_a_keys_allowed_models_is_not_renamed(tenants: Tenants) -> None:
    organization = tenants.organization
    Router.objects.create(organization=organization, slug="support", candidates=["a", "b"])
    key_make(organization, name="support bot", allowed_models=["router/support"])
    key_make(organization, name="other bot", allowed_models=["router/supportive"])
    bot = ApiKey.objects.get(organization=organization, name="support bot")
    manage = key_client(key_make(organization, scope=KeyScope.MANAGE))

    refused = manage.patch("/api/v1/routers/support", {"slug": "help"}, format="json")
    renamed_name = manage.patch("/api/v1/routers/support", {"name": "Help"}, format="json")

    assert refused.status_code == 409, refused.json()
    error = refused.json()["error"]
    assert error["param"] == "slug" and bot.prefix in error["message"]
    assert "support bot" in error["message"] and "other bot" not in error["message"]
    assert error["metadata"]["keys"] == [{"prefix": bot.prefix, "name": "support bot"}]
    assert Router.objects.get(organization=organization).slug == "support"
    assert renamed_name.status_code == 200  # other settings still change
    api_key_revoke(key=bot)
    renamed = manage.patch("/api/v1/routers/support", {"slug": "help"}, format="json")
    assert renamed.status_code == 200, renamed.json()
    assert Router.objects.get(organization=organization).slug == "help"


def test_a_slug_named_by_a_keys_routellm_names_is_not_renamed(tenants: Tenants) -> None:
    organization = tenants.organization
    Router.objects.create(organization=organization, slug="support", candidates=["a", "b"])
    key_make(organization, name="threshold bot", allowed_models=["router-support-0.3"])
    key_make(organization, name="share bot", allowed_models=["openai/x", "router-support-30%"])
    # Another router's names: router-support-x-0.3 is router "support-x" at 0.3.
    key_make(organization, name="other bot", allowed_models=["router-support-x-0.3"])
    key_make(organization, name="cased bot", allowed_models=["ROUTER-support-0.3"])
    bots = ApiKey.objects.filter(organization=organization, name__in=["threshold bot", "share bot"])
    manage = key_client(key_make(organization, scope=KeyScope.MANAGE))

    refused = manage.patch("/api/v1/routers/support", {"slug": "help"}, format="json")

    assert refused.status_code == 409, refused.json()
    error = refused.json()["error"]
    assert error["param"] == "slug" and "router-support-<threshold>" in error["message"]
    assert error["metadata"]["keys"] == [
        {"prefix": k.prefix, "name": k.name} for k in bots.order_by("pk")
    ]
    assert Router.objects.get(organization=organization).slug == "support"
    for bot in bots:
        api_key_revoke(key=bot)
    renamed = manage.patch("/api/v1/routers/support", {"slug": "help"}, format="json")
    assert renamed.status_code == 200, renamed.json()


def test_the_routellm_name_pattern_has_one_home() -> None:
    from routerhub.router_names import ROUTELLM_MODEL_NAME, names_router
    from routing import routellm

    assert routellm.ROUTELLM_MODEL_NAME is ROUTELLM_MODEL_NAME
    assert names_router("router-mf-0.11", "mf") and names_router("router/mf", "mf")
    assert names_router("router-mf-12.5%", "mf") and not names_router("router-mf-x-0.5", "mf")
    assert not names_router("router/mfx", "mf") and not names_router("openai/mf", "mf")
