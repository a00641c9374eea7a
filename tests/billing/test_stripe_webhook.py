"""The Stripe webhook: only signed events count, each once, and they move credits exactly."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from billing.models import (
    LedgerEntry,
    Payment,
    PaymentKind,
    PaymentStatus,
    StripeEvent,
)
from billing.services import credit_account_for, ledger_post
from tests.billing.stripe_support import (
    WEBHOOK_SECRET,
    event_payload,
    stripe_signature,
    webhook_post,
)
from tests.conftest import require_postgres
from tests.factories import organization_make

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _webhook_secret(settings: Any) -> None:
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET


def _payment(organization: Any, intent: str = "pi_test_1", **fields: Any) -> Payment:
    fields.setdefault("amount", Decimal("20.00"))
    fields.setdefault("fee", Decimal("1.10"))
    return Payment.objects.create(
        organization=organization,
        kind=fields.pop("kind", PaymentKind.CHECKOUT),
        stripe_payment_intent_id=intent,
        **fields,
    )


def _intent(payment: Payment, intent: str | None = None, **fields: Any) -> dict[str, Any]:
    total = int((payment.amount + payment.fee) * 100)
    return {
        "id": intent or payment.stripe_payment_intent_id,
        "object": "payment_intent",
        "amount": total,
        "amount_received": total,
        "currency": "usd",
        "status": "succeeded",
        "latest_charge": "ch_test_1",
        "metadata": {
            "payment_id": str(payment.pk),
            "organization_id": str(payment.organization_id),
        },
        **fields,
    }


def _charge(payment: Payment, refunded_cents: int = 0) -> dict[str, Any]:
    total = int((payment.amount + payment.fee) * 100)
    return {
        "id": "ch_test_1",
        "object": "charge",
        "amount": total,
        "amount_refunded": refunded_cents,
        "refunded": refunded_cents >= total,
        "payment_intent": payment.stripe_payment_intent_id,
        "receipt_url": "https://pay.stripe.com/receipts/test",
    }


def _deliver(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> Any:
    payload = event_payload(event_type, obj, event_id)
    return webhook_post(Client(), payload, stripe_signature(payload))


def _balance(organization: Any) -> Decimal:
    return credit_account_for(organization.pk).balance


def test_payment_delivered_ten_times_credits_the_organization_once():
    organization = organization_make()
    payment = _payment(organization)
    payload = event_payload("payment_intent.succeeded", _intent(payment), "evt_paid_1")

    responses = [webhook_post(Client(), payload, stripe_signature(payload)) for _ in range(10)]

    assert [r.status_code for r in responses] == [200] * 10
    assert [r.json()["outcome"] for r in responses] == ["processed"] + ["duplicate"] * 9
    assert _balance(organization) == Decimal("20")
    entry = LedgerEntry.objects.get(organization=organization)
    assert (entry.kind, entry.amount, entry.idempotency_key) == (
        "topup",
        Decimal("20"),
        "stripe:pi_test_1",
    )
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED and payment.stripe_charge_id == "ch_test_1"
    assert StripeEvent.objects.get(event_id="evt_paid_1").organization == organization


def _deliver_on_own_connection(payload: bytes) -> int:
    try:
        return int(webhook_post(Client(), payload, stripe_signature(payload)).status_code)
    finally:
        connection.close()  # each pool thread has its own connection; give it back


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_deliveries_of_one_event_credit_once():
    require_postgres()
    organization = organization_make()
    payload = event_payload("payment_intent.succeeded", _intent(_payment(organization)), "evt_x")

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(lambda _: _deliver_on_own_connection(payload), range(10)))

    assert statuses == [200] * 10
    assert _balance(organization) == Decimal("20")
    assert LedgerEntry.objects.filter(organization=organization).count() == 1
    assert StripeEvent.objects.filter(event_id="evt_x").count() == 1


def test_a_second_event_about_the_same_payment_does_not_credit_again():
    organization = organization_make()
    payment = _payment(organization)

    _deliver("payment_intent.succeeded", _intent(payment), "evt_a")
    _deliver("payment_intent.succeeded", _intent(payment), "evt_b")

    assert _balance(organization) == Decimal("20")
    assert LedgerEntry.objects.filter(organization=organization).count() == 1


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(lambda p: None, id="missing header"),
        pytest.param(lambda p: stripe_signature(p, secret="whsec_wrong"), id="wrong secret"),
        pytest.param(lambda p: stripe_signature(p + b" "), id="body changed after signing"),
        pytest.param(lambda p: stripe_signature(p, at=int(time.time()) - 3600), id="replayed"),
        pytest.param(lambda p: stripe_signature(p).replace("v1=", "v0="), id="only v0 scheme"),
        pytest.param(lambda p: "t=1,v1=deadbeef", id="garbage"),
    ],
)
def test_a_bad_signature_is_rejected_and_credits_nothing(signature: Any):
    organization = organization_make()
    payment = _payment(organization)
    payload = event_payload("payment_intent.succeeded", _intent(payment))

    response = webhook_post(Client(), payload, signature(payload))

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "bad_request"
    assert _balance(organization) == Decimal("0")
    assert not LedgerEntry.objects.exists() and not StripeEvent.objects.exists()
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PENDING


@pytest.mark.parametrize(
    ("seconds_ago", "status"),
    [
        # A margin past the 300 s tolerance: the signature's whole-second timestamp and a slow
        # request made -301 land 299.x s ahead once (accepted).
        pytest.param(330, 400, id="older than the tolerance"),
        pytest.param(-330, 400, id="dated beyond the tolerance in the future"),
        pytest.param(270, 200, id="inside the tolerance"),
        pytest.param(-30, 200, id="slightly in the future (clock skew)"),
    ],
)
def test_a_correctly_signed_event_counts_only_within_the_timestamp_tolerance(
    seconds_ago: int, status: int
):
    organization = organization_make()
    payload = event_payload("payment_intent.succeeded", _intent(_payment(organization)))
    signature = stripe_signature(payload, at=int(time.time()) - seconds_ago)

    response = webhook_post(Client(), payload, signature)

    assert response.status_code == status
    credited = status == 200
    assert _balance(organization) == (Decimal("20") if credited else Decimal("0"))
    assert StripeEvent.objects.exists() is credited


def test_the_timestamp_tolerance_is_a_setting(settings: Any):
    settings.STRIPE_WEBHOOK_TOLERANCE = 60
    organization = organization_make()
    payload = event_payload("payment_intent.succeeded", _intent(_payment(organization)))

    old = webhook_post(Client(), payload, stripe_signature(payload, at=int(time.time()) - 120))
    ahead = webhook_post(Client(), payload, stripe_signature(payload, at=int(time.time()) + 120))

    assert (old.status_code, ahead.status_code) == (400, 400)
    assert not StripeEvent.objects.exists() and _balance(organization) == Decimal("0")


def test_a_signature_header_with_a_rotated_secret_next_to_the_current_one_is_accepted():
    organization = organization_make()
    payload = event_payload("payment_intent.succeeded", _intent(_payment(organization)))
    current = stripe_signature(payload)
    old = stripe_signature(payload, secret="whsec_old").split(",")[1]

    response = webhook_post(Client(), payload, f"{current},{old}")

    assert response.status_code == 200
    assert _balance(organization) == Decimal("20")


def test_without_a_configured_secret_every_event_is_refused(settings: Any):
    settings.STRIPE_WEBHOOK_SECRET = ""
    organization = organization_make()
    payload = event_payload("payment_intent.succeeded", _intent(_payment(organization)))

    response = webhook_post(Client(), payload, stripe_signature(payload, secret=""))

    assert response.status_code == 503
    assert _balance(organization) == Decimal("0")


def test_unknown_event_types_are_acknowledged_and_ignored():
    response = _deliver("customer.created", {"id": "cus_1", "object": "customer"}, "evt_x")

    assert response.status_code == 200 and response.json()["outcome"] == "ignored"
    assert StripeEvent.objects.get(event_id="evt_x").outcome == "ignored"
    assert not LedgerEntry.objects.exists()


def test_a_payment_that_is_not_ours_credits_nobody():
    victim, attacker = organization_make(), organization_make()
    payment = _payment(victim)
    # A signed event cannot be forged, but its metadata must still not pick the organization.
    intent = _intent(payment, intent="pi_someone_else")
    intent["metadata"]["organization_id"] = str(attacker.pk)

    response = _deliver("payment_intent.succeeded", intent)

    assert response.json()["outcome"] == "ignored"
    assert not LedgerEntry.objects.exists()


def test_the_webhook_finds_a_payment_whose_intent_id_was_not_saved_yet():
    organization = organization_make()
    payment = _payment(organization, intent="")

    _deliver("payment_intent.succeeded", _intent(payment, intent="pi_fast"))

    payment.refresh_from_db()
    assert payment.stripe_payment_intent_id == "pi_fast"
    assert payment.status == PaymentStatus.SUCCEEDED
    assert _balance(organization) == Decimal("20")


def test_a_payment_of_another_amount_than_ours_credits_nothing():
    organization = organization_make()
    payment = _payment(organization)

    _deliver("payment_intent.succeeded", _intent(payment, amount=100, amount_received=100))

    assert _balance(organization) == Decimal("0")
    payment.refresh_from_db()
    assert "expected 2110" in payment.failure_message


def test_refunds_take_back_credits_in_proportion_to_the_refunded_share():
    organization = organization_make()
    payment = _payment(organization)
    _deliver("payment_intent.succeeded", _intent(payment))

    _deliver("charge.refunded", _charge(payment, refunded_cents=1055), "evt_refund_half")
    half = _balance(organization)
    _deliver("charge.refunded", _charge(payment, refunded_cents=2110), "evt_refund_rest")
    _deliver("charge.refunded", _charge(payment, refunded_cents=2110), "evt_refund_rest")

    assert half == Decimal("10")
    assert _balance(organization) == Decimal("0")
    refunds = LedgerEntry.objects.filter(organization=organization, kind="refund")
    assert sorted(e.amount for e in refunds) == [Decimal("-10"), Decimal("-10")]
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REFUNDED


def test_the_charge_brings_the_receipt_url_of_the_payment():
    organization = organization_make()
    payment = _payment(organization)
    _deliver("payment_intent.succeeded", _intent(payment))

    _deliver("charge.succeeded", _charge(payment))

    payment.refresh_from_db()
    assert payment.receipt_url == "https://pay.stripe.com/receipts/test"
    assert payment.stripe_charge_id == "ch_test_1"
    assert _balance(organization) == Decimal("20")


def test_a_refund_of_credits_already_spent_stops_the_balance_at_zero():
    organization = organization_make()
    payment = _payment(organization)
    _deliver("payment_intent.succeeded", _intent(payment))
    ledger_post(organization=organization, kind="usage", amount=Decimal("-17"), idempotency_key="u")

    _deliver("charge.refunded", _charge(payment, refunded_cents=2110))

    assert _balance(organization) == Decimal("0")
    assert LedgerEntry.objects.get(kind="refund").amount == Decimal("-3")


def test_a_dispute_takes_the_credits_back_and_a_won_dispute_returns_them():
    organization = organization_make()
    payment = _payment(organization)
    _deliver("payment_intent.succeeded", _intent(payment))
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "amount": 2110,
        "charge": "ch_test_1",
        "payment_intent": payment.stripe_payment_intent_id,
        "status": "needs_response",
    }

    _deliver("charge.dispute.created", dispute)
    during = _balance(organization)
    _deliver("charge.dispute.closed", {**dispute, "status": "won"})

    assert during == Decimal("0")
    assert _balance(organization) == Decimal("20")
    adjustments = LedgerEntry.objects.filter(kind="adjustment").order_by("id")
    assert [e.amount for e in adjustments] == [Decimal("-20"), Decimal("20")]
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED


def test_a_lost_dispute_keeps_the_credits_taken():
    organization = organization_make()
    payment = _payment(organization)
    _deliver("payment_intent.succeeded", _intent(payment))
    dispute = {"id": "dp_2", "amount": 2110, "charge": "ch_test_1", "status": "needs_response"}

    _deliver("charge.dispute.created", dispute)
    _deliver("charge.dispute.closed", {**dispute, "status": "lost"})

    assert _balance(organization) == Decimal("0")
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.DISPUTED


def test_a_declined_automatic_top_up_is_marked_failed_with_the_reason():
    organization = organization_make()
    payment = _payment(organization, kind=PaymentKind.AUTO_TOPUP)
    intent = _intent(payment, status="requires_payment_method")
    intent["last_payment_error"] = {"message": "Your card was declined."}

    _deliver("payment_intent.payment_failed", intent)

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert payment.failure_message == "Your card was declined."
    assert _balance(organization) == Decimal("0")


def test_a_body_that_is_not_json_is_rejected():
    payload = b"not json"

    response = webhook_post(Client(), payload, stripe_signature(payload))

    assert response.status_code == 400
    assert json.loads(response.content)["error"]["message"]
