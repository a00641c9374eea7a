"""Stripe does not promise to deliver events in order (and redelivers a failed one for days): a
refund or dispute may reach the webhook before the ``payment_intent.succeeded`` of its payment.
The credits an organization ends with must not depend on that order: a refunded payment leaves
nothing, half refunded half its credits, a disputed one nothing until the dispute is won."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from billing.models import LedgerEntry, Payment, PaymentKind, PaymentStatus
from billing.services import credit_account_for, ledger_post
from tests.billing.stripe_support import (
    WEBHOOK_SECRET,
    event_payload,
    stripe_signature,
    webhook_post,
)
from tests.factories import organization_make

pytestmark = pytest.mark.django_db

TOTAL_CENTS = 2110  # 20.00 of credits and a 1.10 fee


@pytest.fixture(autouse=True)
def _webhook_secret(settings: Any) -> None:
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET


def _payment(organization: Any, **fields: Any) -> Payment:
    return Payment.objects.create(
        organization=organization,
        kind=PaymentKind.CHECKOUT,
        stripe_payment_intent_id="pi_ooo_1",
        amount=Decimal("20.00"),
        fee=Decimal("1.10"),
        **fields,
    )


def _succeeded(payment: Payment, **fields: Any) -> dict[str, Any]:
    return {
        "id": payment.stripe_payment_intent_id,
        "object": "payment_intent",
        "amount": TOTAL_CENTS,
        "amount_received": TOTAL_CENTS,
        "currency": "usd",
        "status": "succeeded",
        "latest_charge": "ch_ooo_1",
        "metadata": {
            "payment_id": str(payment.pk),
            "organization_id": str(payment.organization_id),
        },
        **fields,
    }


def _refunded(payment: Payment, cents: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": "ch_ooo_1",
        "object": "charge",
        "amount": TOTAL_CENTS,
        "amount_refunded": cents,
        "currency": "usd",
        "payment_intent": payment.stripe_payment_intent_id,
        **fields,
    }


def _dispute(payment: Payment, status: str = "needs_response") -> dict[str, Any]:
    return {
        "id": "dp_ooo_1",
        "object": "dispute",
        "amount": TOTAL_CENTS,
        "currency": "usd",
        "charge": "ch_ooo_1",
        "payment_intent": payment.stripe_payment_intent_id,
        "status": status,
    }


def _deliver(event_type: str, obj: dict[str, Any], event_id: str) -> None:
    payload = event_payload(event_type, obj, event_id)
    response = webhook_post(Client(), payload, stripe_signature(payload))
    assert response.status_code == 200, response.content


def _balance(organization: Any) -> Decimal:
    return credit_account_for(organization.pk).balance


@pytest.mark.parametrize(("refunded_cents", "left"), [(TOTAL_CENTS, "0"), (1055, "10")])
def test_a_refund_delivered_before_its_payment_leaves_what_the_refund_leaves(
    refunded_cents: int, left: str
) -> None:
    organization = organization_make()
    payment = _payment(organization)

    _deliver("charge.refunded", _refunded(payment, refunded_cents), "evt_ooo_refund")
    _deliver("payment_intent.succeeded", _succeeded(payment), "evt_ooo_paid")

    assert _balance(organization) == Decimal(left)
    topups = LedgerEntry.objects.filter(organization=organization, kind="topup")
    assert [e.amount for e in topups] == [Decimal("20")]  # credited once, whichever came first
    payment.refresh_from_db()
    expected = PaymentStatus.REFUNDED if left == "0" else PaymentStatus.PARTIALLY_REFUNDED
    assert payment.status == expected and payment.refunded_credits == Decimal("20") - Decimal(left)


def test_a_refund_before_its_payment_takes_nothing_from_other_credits() -> None:
    organization = organization_make()
    ledger_post(
        organization=organization, kind="promotion", amount=Decimal("5"), idempotency_key="p"
    )
    payment = _payment(organization)

    _deliver("charge.refunded", _refunded(payment, TOTAL_CENTS), "evt_ooo_refund")
    _deliver("payment_intent.succeeded", _succeeded(payment), "evt_ooo_paid")

    assert _balance(organization) == Decimal("5")


def test_a_dispute_delivered_before_its_payment_holds_the_credits_until_it_is_won() -> None:
    organization = organization_make()
    payment = _payment(organization)

    _deliver("charge.dispute.created", _dispute(payment), "evt_ooo_dispute")
    _deliver("payment_intent.succeeded", _succeeded(payment), "evt_ooo_paid")
    during = _balance(organization)
    _deliver("charge.dispute.closed", _dispute(payment, "won"), "evt_ooo_won")

    assert during == Decimal("0")
    assert _balance(organization) == Decimal("20")


def test_a_refund_of_a_charge_of_another_amount_credits_and_takes_nothing() -> None:
    """A charge that is not what we asked for was never credited: its refund moves nothing."""
    organization = organization_make()
    ledger_post(
        organization=organization, kind="promotion", amount=Decimal("5"), idempotency_key="p"
    )
    payment = _payment(organization)

    _deliver("charge.refunded", _refunded(payment, 100, amount=100), "evt_ooo_refund")

    assert _balance(organization) == Decimal("5")
    assert not LedgerEntry.objects.filter(organization=organization, kind="topup").exists()
