"""Disputes move credits as Stripe moves money, whatever the order of their events: an inquiry
(``warning_*`` statuses) takes nothing (Stripe withdraws nothing for one); a refund never takes
again what a dispute of the same charge took; a dispute larger than its charge (currency
fluctuation) arriving before ``payment_intent.succeeded`` still credits and takes the payment;
a won dispute whose ``closed`` arrives before its ``created`` leaves the credits and the payment
settled. Events are localstripe-shaped, as in test_stripe_out_of_order.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billing.models import PaymentStatus
from billing.services import ledger_post
from tests.factories import organization_make
from tests.security.test_stripe_out_of_order import (
    TOTAL_CENTS,
    _balance,
    _deliver,
    _dispute,
    _payment,
    _refunded,
    _succeeded,
    _webhook_secret,
)

__all__ = ["_webhook_secret"]

pytestmark = pytest.mark.django_db


def _paid_with_promotion() -> tuple[Any, Any]:
    organization = organization_make()
    ledger_post(
        organization=organization, kind="promotion", amount=Decimal("5"), idempotency_key="p"
    )
    payment = _payment(organization)
    _deliver("payment_intent.succeeded", _succeeded(payment), "evt_paid")
    return organization, payment


def test_a_dispute_larger_than_its_charge_before_the_payment_takes_the_payment() -> None:
    organization = organization_make()
    payment = _payment(organization)
    larger = {**_dispute(payment), "amount": TOTAL_CENTS + 90}

    _deliver("charge.dispute.created", larger, "evt_dispute")
    _deliver("payment_intent.succeeded", _succeeded(payment), "evt_paid")
    during = _balance(organization)
    _deliver("charge.dispute.closed", {**larger, "status": "won"}, "evt_won")

    assert (during, _balance(organization)) == (Decimal("0"), Decimal("20"))


def test_an_inquiry_takes_nothing_and_its_refund_takes_the_payment_once() -> None:
    organization, payment = _paid_with_promotion()

    _deliver("charge.dispute.created", _dispute(payment, "warning_needs_response"), "evt_inq")
    during_inquiry = _balance(organization)
    _deliver("charge.refunded", _refunded(payment, TOTAL_CENTS), "evt_refund")
    _deliver("charge.dispute.closed", _dispute(payment, "warning_closed"), "evt_inq_closed")

    assert (during_inquiry, _balance(organization)) == (Decimal("25"), Decimal("5"))
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REFUNDED


def test_a_refund_after_a_chargeback_never_takes_the_same_money_again() -> None:
    organization, payment = _paid_with_promotion()

    _deliver("charge.dispute.created", _dispute(payment), "evt_dispute")
    _deliver("charge.refunded", _refunded(payment, TOTAL_CENTS), "evt_refund")

    assert _balance(organization) == Decimal("5")


@pytest.mark.parametrize("paid_first", [True, False])
def test_a_won_dispute_closed_before_it_was_created_leaves_the_credits(paid_first: bool) -> None:
    organization = organization_make()
    payment = _payment(organization)
    if paid_first:
        _deliver("payment_intent.succeeded", _succeeded(payment), "evt_paid")

    _deliver("charge.dispute.closed", _dispute(payment, "won"), "evt_won")
    _deliver("charge.dispute.created", _dispute(payment), "evt_dispute")
    if not paid_first:
        _deliver("payment_intent.succeeded", _succeeded(payment), "evt_paid")

    assert _balance(organization) == Decimal("20")
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
