"""Stripe webhook events → credits. Each event is handled once (``StripeEvent``, unique id).

Top-ups credit the organization of our ``Payment`` row (never an id from the payload alone):
``ledger_post(kind="topup", idempotency_key="stripe:<payment intent id>")``. Refunds take back
credits in proportion to the refunded share of the charge; disputes take back the disputed
share and return it if the dispute is won. ``ledger_post`` never takes a balance below zero,
so credits already spent are not clawed back past it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from billing.models import (
    LedgerEntry,
    LedgerKind,
    Payment,
    PaymentKind,
    PaymentStatus,
    StripeEvent,
)
from billing.services import ledger_post
from routerhub.money import ZERO, money

logger = logging.getLogger(__name__)

StripeObject = dict[str, Any]


def _id(value: Any) -> str:
    """An id field that Stripe sends as an id or, when expanded, as the object."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def _payment_for_intent(intent: StripeObject) -> Payment | None:
    """Our payment of a PaymentIntent, locked; found by metadata when its id is not saved yet."""
    payments = Payment.objects.select_for_update()
    payment = payments.filter(stripe_payment_intent_id=intent["id"]).first()
    if payment is not None:
        return payment
    metadata = intent.get("metadata") or {}
    payment_id = str(metadata.get("payment_id") or "")
    organization_id = str(metadata.get("organization_id") or "")
    if not (payment_id.isdigit() and organization_id.isdigit()):
        return None
    payment = payments.filter(
        pk=int(payment_id), organization_id=int(organization_id), stripe_payment_intent_id=""
    ).first()
    if payment is not None:
        payment.stripe_payment_intent_id = intent["id"]
    return payment


def _payment_for_charge(charge_id: str, intent_id: str) -> Payment | None:
    query = Q(stripe_charge_id=charge_id) if charge_id else Q(pk__in=[])
    if intent_id:
        query |= Q(stripe_payment_intent_id=intent_id)
    return Payment.objects.select_for_update().filter(query).first()


def _charge_of_intent(intent: StripeObject) -> StripeObject:
    """The intent's charge as far as the payload has it (expanded by localstripe and by older
    API versions in ``charges``; real Stripe sends only its id, then ``charge.succeeded``
    brings the receipt URL)."""
    latest = intent.get("latest_charge")
    if isinstance(latest, dict):
        return latest
    listed = (intent.get("charges") or {}).get("data") or []
    if listed:
        return dict(listed[0])
    return {"id": latest} if latest else {}


def _share(payment: Payment, part_cents: int, total_cents: int) -> Decimal:
    if total_cents <= 0:
        return ZERO
    return money(payment.amount * min(part_cents, total_cents) / total_cents)


def _credit(payment: Payment, intent_id: str, paid_cents: int, currency: str) -> bool:
    """Credit the payment's credits, once (``stripe:<intent id>``), if Stripe took what we asked
    in our currency; else say why on the payment and credit nothing. False when not credited."""
    expected = int((payment.amount + payment.fee) * 100)
    if not intent_id or paid_cents != expected or currency.lower() != payment.currency:
        logger.error("intent %s paid %s cents, expected %s", intent_id, paid_cents, expected)
        payment.failure_message = f"Paid {paid_cents} cents, expected {expected}; not credited."
        return False
    ledger_post(
        organization=payment.organization,
        kind=LedgerKind.TOPUP,
        amount=payment.amount,
        idempotency_key=f"stripe:{intent_id}",
        description=f"Credit purchase ({payment.get_kind_display().lower()})",
        reference=intent_id,
    )
    if payment.status in (PaymentStatus.PENDING, PaymentStatus.FAILED, PaymentStatus.CANCELED):
        payment.status, payment.failure_message = PaymentStatus.SUCCEEDED, ""
    payment.paid_at = payment.paid_at or timezone.now()
    return True


def _credited_first(payment: Payment, paid_cents: int, currency: str) -> bool:
    """Whether the payment's credits are in (``paid_at``), crediting them now if a refund or a
    dispute arrived before ``payment_intent.succeeded`` (Stripe does not promise order; a charge
    refunded or disputed was paid). That event then finds the credit made and adds nothing, and
    what the refund or dispute takes back is taken from these credits, not from others."""
    if payment.paid_at is not None:
        return True
    return _credit(payment, payment.stripe_payment_intent_id, paid_cents, currency)


def _intent_succeeded(intent: StripeObject) -> Payment | None:
    payment = _payment_for_intent(intent)
    if payment is None:
        return None
    received = int(intent.get("amount_received") or intent.get("amount") or 0)
    if _credit(payment, intent["id"], received, str(intent.get("currency", ""))):
        charge = _charge_of_intent(intent)
        payment.stripe_charge_id = payment.stripe_charge_id or _id(charge)
        payment.receipt_url = payment.receipt_url or str(charge.get("receipt_url") or "")
    payment.save()
    return payment


def _intent_failed(intent: StripeObject) -> Payment | None:
    payment = _payment_for_intent(intent)
    if payment is None:
        return None
    error = intent.get("last_payment_error") or {}
    if payment.status == PaymentStatus.PENDING:
        # A failed attempt of an on-session checkout can be retried with another card on the
        # same intent, so only automatic top-ups are marked failed for good.
        if payment.kind == PaymentKind.AUTO_TOPUP:
            payment.status = PaymentStatus.FAILED
        payment.failure_message = str(error.get("message") or "The card was declined.")[:300]
        payment.save()
    return payment


def _intent_canceled(intent: StripeObject) -> Payment | None:
    payment = _payment_for_intent(intent)
    if payment is not None and payment.status == PaymentStatus.PENDING:
        payment.status = PaymentStatus.CANCELED
        payment.save()
    return payment


def _remember_charge(payment: Payment, charge: StripeObject) -> None:
    payment.stripe_charge_id = charge["id"]
    payment.receipt_url = str(charge.get("receipt_url") or payment.receipt_url)


def _charge_succeeded(charge: StripeObject) -> Payment | None:
    payment = _payment_for_charge(charge["id"], _id(charge.get("payment_intent")))
    if payment is None:
        return None
    _remember_charge(payment, charge)
    payment.save()
    return payment


def _charge_refunded(charge: StripeObject) -> Payment | None:
    payment = _payment_for_charge(charge["id"], _id(charge.get("payment_intent")))
    if payment is None:
        return None
    _remember_charge(payment, charge)
    total, refunded = int(charge["amount"]), int(charge.get("amount_refunded") or 0)
    # amount_refunded is cumulative: take back the difference to what earlier refunds took.
    target = _share(payment, refunded, total)
    # Never the same money twice: what disputes of this charge took (net of any won back) is
    # already gone; a refund takes at most what is left of the payment's credits.
    debit = min(
        target - payment.refunded_credits,
        payment.amount - payment.refunded_credits - _disputes_took(payment),
    )
    currency = str(charge.get("currency") or payment.currency)
    if debit > 0 and _credited_first(payment, total, currency):
        ledger_post(
            organization=payment.organization,
            kind=LedgerKind.REFUND,
            amount=-debit,
            idempotency_key=f"stripe:refund:{charge['id']}:{refunded}",
            description="Card payment refunded",
            reference=payment.stripe_payment_intent_id or charge["id"],
        )
        payment.refunded_credits = target
    payment.status = (
        PaymentStatus.REFUNDED if refunded >= total else PaymentStatus.PARTIALLY_REFUNDED
    )
    payment.save()
    return payment


def _disputes_took(payment: Payment) -> Decimal:
    """What the payment's disputes took from its credits, net of what won disputes gave back."""
    if not payment.stripe_payment_intent_id:
        return ZERO  # never credited (``_credit`` needs the intent), so nothing was taken
    entries = LedgerEntry.objects.filter(
        organization_id=payment.organization_id,
        reference=payment.stripe_payment_intent_id,
        idempotency_key__startswith="stripe:dispute",
    )
    return -sum((entry.amount for entry in entries), ZERO)


def _dispute_created(dispute: StripeObject) -> Payment | None:
    payment = _payment_for_charge(_id(dispute.get("charge")), _id(dispute.get("payment_intent")))
    if payment is None:
        return None
    if str(dispute.get("status") or "").startswith("warning_"):
        # An inquiry (a retrieval request): Stripe withdraws no money, so no credits move; if the
        # bank escalates it, Stripe opens a chargeback, a dispute of its own, which does.
        return payment
    if LedgerEntry.objects.filter(idempotency_key=f"stripe:dispute-won:{dispute['id']}").exists():
        return payment  # its "won" was delivered first: nothing to take, and it is settled
    total = int((payment.amount + payment.fee) * 100)
    amount = int(dispute.get("amount") or total)
    # A dispute names the disputed amount, not the charge's (currency fluctuation can make it
    # larger): at most the charge is all it can be, and a disputed charge was paid in full.
    disputed = min(_share(payment, amount, total), payment.amount - payment.refunded_credits)
    currency = str(dispute.get("currency") or payment.currency)
    if disputed > 0 and _credited_first(payment, total, currency):
        ledger_post(
            organization=payment.organization,
            kind=LedgerKind.ADJUSTMENT,
            amount=-disputed,
            idempotency_key=f"stripe:dispute:{dispute['id']}",
            description="Card payment disputed",
            reference=payment.stripe_payment_intent_id,
        )
    payment.status = PaymentStatus.DISPUTED
    payment.save()
    return payment


def _dispute_closed(dispute: StripeObject) -> Payment | None:
    payment = _payment_for_charge(_id(dispute.get("charge")), _id(dispute.get("payment_intent")))
    if payment is None:
        return None
    if dispute.get("status") != "won":
        return payment  # lost: what its creation took stays taken; warning_closed: none was
    taken = LedgerEntry.objects.filter(idempotency_key=f"stripe:dispute:{dispute['id']}").first()
    # Give back what the dispute actually took (less than asked if credits were spent; nothing
    # when this arrives before its ``created``, whose handler then finds this entry and takes
    # nothing: the order of the two events does not matter).
    ledger_post(
        organization=payment.organization,
        kind=LedgerKind.ADJUSTMENT,
        amount=-taken.amount if taken is not None else ZERO,
        idempotency_key=f"stripe:dispute-won:{dispute['id']}",
        description="Card dispute won",
        reference=payment.stripe_payment_intent_id,
    )
    payment.status = (
        PaymentStatus.PARTIALLY_REFUNDED if payment.refunded_credits else PaymentStatus.SUCCEEDED
    )
    payment.save()
    return payment


HANDLERS: dict[str, Callable[[StripeObject], Payment | None]] = {
    "payment_intent.succeeded": _intent_succeeded,
    "payment_intent.payment_failed": _intent_failed,
    "payment_intent.canceled": _intent_canceled,
    "charge.succeeded": _charge_succeeded,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_created,
    "charge.dispute.closed": _dispute_closed,
}


def stripe_event_handle(*, event: StripeObject) -> str:
    """Apply one verified webhook event; returns ``processed``, ``ignored`` or ``duplicate``.

    The event row and its effects commit together: a crash leaves neither, and Stripe's
    redelivery then applies it. A concurrent duplicate waits on the unique event id and then
    fails to insert, which is the same as finding it.
    """
    event_id, event_type = str(event["id"]), str(event["type"])
    handler = HANDLERS.get(event_type)
    if StripeEvent.objects.filter(event_id=event_id).exists():
        return "duplicate"
    try:
        with transaction.atomic():
            record = StripeEvent.objects.create(
                event_id=event_id,
                type=event_type[:100],
                livemode=bool(event.get("livemode")),
                outcome="ignored",
            )
            payment = handler(event["data"]["object"]) if handler else None
            if payment is None:
                if handler is not None:
                    logger.warning("stripe event %s (%s) has no payment here", event_id, event_type)
                return "ignored"
            record.outcome, record.organization_id = "processed", payment.organization_id
            record.save(update_fields=["outcome", "organization"])
            return "processed"
    except IntegrityError:
        if StripeEvent.objects.filter(event_id=event_id).exists():
            return "duplicate"
        raise
