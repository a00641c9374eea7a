"""The client against the in-process server: keys, credits, ledger, receipts, auto top-up,
checkout, provider keys."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from routerhub_client import (
    NotFoundError,
    PermissionDeniedError,
    RouterHub,
    ServiceUnavailableError,
)

from billing.models import Payment, PaymentKind, PaymentStatus
from tests.log_hygiene import secret_register
from tests.routing.world import World


def test_current_key_describes_the_inference_key(inference: RouterHub, world: World) -> None:
    current = inference.keys.current()

    assert current["organization"]["id"] == world.organization.pk
    assert current["scope"] == "inference"
    assert world.key.startswith(current["prefix"])


def test_key_lifecycle_create_get_update_list_revoke(manage: RouterHub) -> None:
    created = manage.keys.create(
        "pipeline", limit="5", limit_reset="daily", rpm=60, budget_aware=True
    )
    secret_register(created["key"], "API key")

    fetched = manage.keys.get(created["id"])
    updated = manage.keys.update(
        created["id"], name="pipeline v2", limit=None, tpm=1000, budget_aware=False
    )
    listed = [key["id"] for key in manage.keys.list(page_size=1)]  # one key per page
    revoked = manage.keys.revoke(created["id"])

    assert created["key"].startswith("rh-") and created["scope"] == "inference"
    assert fetched["name"] == "pipeline" and fetched["limit"] == "5.00000000"
    assert fetched["budget_aware"] is True and updated["budget_aware"] is False
    assert "key" not in fetched
    assert (updated["name"], updated["limit"], updated["tpm"]) == ("pipeline v2", None, 1000)
    assert created["id"] in listed and len(listed) >= 3  # world's key, the manage key, this
    assert len(listed) == len(set(listed))
    assert revoked["is_active"] is False


def test_an_inference_key_cannot_manage_keys(inference: RouterHub) -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        list(inference.keys.list())

    assert caught.value.status == 403 and caught.value.request_id


def test_credits_ledger_and_quote(manage: RouterHub) -> None:
    credits = manage.credits.get()
    ledger = list(manage.credits.ledger())
    promotions = list(manage.credits.ledger(kind="promotion"))
    quote = manage.credits.quote("20")

    assert Decimal(credits["balance"]) == Decimal("10") and credits["currency"] == "USD"
    assert [entry["kind"] for entry in promotions] == ["promotion"]
    assert promotions[0]["id"] in [entry["id"] for entry in ledger]
    assert (quote["fee"], quote["total"]) == ("1.10000000", "21.10000000")


def test_auto_topup_set_read_and_clear(manage: RouterHub) -> None:
    enabled = manage.credits.auto_topup_update(threshold="5", amount="25")
    read = manage.credits.auto_topup()
    cleared = manage.credits.auto_topup_update(threshold=None, amount=None)

    assert enabled == read
    assert read["enabled"] is True and Decimal(read["amount"] or "0") == Decimal("25")
    assert cleared["enabled"] is False


def test_receipts_list_the_organizations_card_payments(manage: RouterHub, world: World) -> None:
    Payment.objects.create(
        organization=world.organization,
        kind=PaymentKind.CHECKOUT,
        amount=Decimal("20"),
        fee=Decimal("1.10"),
        stripe_payment_intent_id="pi_client_test",
        status=PaymentStatus.SUCCEEDED,
    )

    receipts = list(manage.credits.receipts())

    assert [(r["session_id"], r["status"], r["total"]) for r in receipts] == [
        ("pi_client_test", "succeeded", "21.10000000")
    ]


def test_checkout_without_stripe_raises_a_typed_error(manage: RouterHub, settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""

    with pytest.raises(ServiceUnavailableError) as caught:
        manage.credits.checkout("20")

    error = caught.value
    assert (error.status, error.code, error.type) == (503, 503, "payments_unavailable")
    assert error.message and error.request_id


def test_provider_keys_create_list_delete(manage: RouterHub) -> None:
    secret = secret_register("sk-client-test-abcd9876", "provider key")

    created = manage.provider_keys.create("fake-openai", secret, name="mine")
    listed = list(manage.provider_keys.list())
    manage.provider_keys.delete(created["id"])

    assert created["last4"] == "9876" and "secret" not in created
    assert [key["id"] for key in listed] == [created["id"]]
    assert list(manage.provider_keys.list()) == []
    with pytest.raises(NotFoundError):
        manage.provider_keys.delete(created["id"])
