"""The dashboard's forms refuse what the API refuses, with a message next to the field and never a
500: each form is checked by the API's own input serializer (``routerhub.api_forms``), so a
limit has one home. Before, the Keys form took any number of allowed models and any rpm (one over
the column's range was a 500), a reset window without a limit and a past expiry; the provider-key
form any length of secret; the router form any number of candidates; the lifecycle form any
decision count (a 500 past the column's range)."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import ApiKey
from routing.models import Provider, ProviderKey
from tests.factories import Tenants, dashboard_client
from training.models import Router

pytestmark = pytest.mark.django_db

KEY = {"name": "k", "scope": "inference"}


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"rpm": "99999999999"}, "rpm", "less than or equal to 1000000"),
        ({"tpm": "99999999999999"}, "tpm", "less than or equal to 1000000000"),
        (
            {"allowed_models": ",".join(f"m{i}" for i in range(201))},
            "allowed_models",
            "no more than 200 elements",
        ),
        ({"allowed_models": "a," + "m" * 201}, "allowed_models", "item 2: Ensure this field"),
        ({"limit_reset": "daily"}, "limit_reset", "a reset window needs a credit limit"),
        ({"expires_at": "2001-01-01 00:00"}, "expires_at", "must be in the future"),
    ],
)
def test_the_keys_form_refuses_what_the_keys_api_refuses(
    tenants: Tenants, fields: dict[str, str], field: str, message: str
) -> None:
    client = dashboard_client(tenants.admin, tenants.organization)

    response = client.post("/dashboard/keys/", {**KEY, **fields})

    assert response.status_code == 200
    assert message in response.context["form"].errors[field][0]
    assert not ApiKey.objects.filter(name="k").exists()


def test_the_keys_form_still_creates_a_key_within_the_limits(tenants: Tenants) -> None:
    client = dashboard_client(tenants.admin, tenants.organization)

    response = client.post(
        "/dashboard/keys/", {**KEY, "rpm": "1000000", "limit": "5", "limit_reset": "daily"}
    )

    assert response.status_code == 200 and not response.context["form"].errors
    key = ApiKey.objects.get(name="k")
    assert (key.rpm, key.limit_reset) == (1_000_000, "daily")


def test_the_provider_key_form_refuses_a_secret_longer_than_the_api_takes(
    tenants: Tenants,
) -> None:
    Provider.objects.create(
        slug="openai-test", name="OpenAI", api_style="openai", base_url="http://127.0.0.1:9"
    )
    client = dashboard_client(tenants.admin, tenants.organization)

    response = client.post(
        "/dashboard/provider-keys/", {"provider": "openai-test", "secret": "s" * 2001}
    )

    assert response.status_code == 200
    assert "no more than 2000 characters" in response.context["form"].errors["secret"][0]
    assert not ProviderKey.objects.exists()


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        (",".join(f"m{i}" for i in range(65)), "no more than 64 elements"),
        ("a," + "m" * 201, "item 2: Ensure this field has no more than 200 characters"),
        ("same,same", "at least 2 distinct models"),
    ],
)
def test_the_router_form_refuses_candidates_the_routers_api_refuses(
    tenants: Tenants, candidates: str, message: str
) -> None:
    client = dashboard_client(tenants.admin, tenants.organization)

    response = client.post(
        "/dashboard/routers/", {"slug": "r", "candidates": candidates, "default_tradeoff": "0.5"}
    )

    assert response.status_code == 200
    assert message in response.context["form"].errors["candidates"][0]
    assert not Router.objects.filter(slug="r").exists()


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"promotion_min_decisions": "99999999999"}, "promotion_min_decisions", "1000000"),
        ({"shadow_share": "0.9"}, "shadow_share", "ROUTER_SHADOW_MAX_SHARE"),
    ],
)
def test_the_lifecycle_form_refuses_what_the_lifecycle_api_refuses(
    tenants: Tenants, settings: Any, fields: dict[str, str], field: str, message: str
) -> None:
    settings.ROUTER_SHADOW_MAX_SHARE = 0.5
    Router.objects.create(organization=tenants.organization, slug="r", name="R")
    client = dashboard_client(tenants.admin, tenants.organization)
    body = {
        "shadow_share": "0.1",
        "challenger_share": "0.1",
        "exploration_rate": "0",
        "promotion": "never",
        "promotion_min_decisions": "500",
    }

    response = client.post("/dashboard/routers/r/lifecycle", {**body, **fields})

    assert response.status_code == 200
    assert message in response.context["form"].errors[field][0]
    assert Router.objects.get(slug="r").promotion_min_decisions == 500
