"""Stripe top-ups: a customer per organization, checkout (a PaymentIntent), receipts, auto top-up.

Credits never move here: every payment is credited by the ``payment_intent.succeeded`` webhook
(``billing.stripe.events``), so a checkout and an automatic top-up follow the same path.

Why PaymentIntents and not Checkout Sessions: the fake Stripe the tests run against
(``localstripe``) has no Checkout Sessions; a PaymentIntent confirmed by Stripe.js on our own
pay page (``billing.stripe.pages``) works the same against real Stripe and the fake.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import stripe
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from accounts.models import Membership, Organization, Role, User
from billing.models import CreditAccount, Payment, PaymentKind, PaymentStatus
from billing.pricing import topup_fee
from billing.services import credit_account_for
from routerhub.domain import InvalidInput, PaymentsUnavailable, UpstreamFailed
from routerhub.money import money
from webhooks.models import WebhookEvent
from webhooks.services import webhook_event_emit

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
# An open automatic top-up blocks the next one for this long (its webhook may be in flight);
# a declined one is not retried sooner, so a dead card is not charged every minute.
AUTO_TOPUP_PENDING_WINDOW = timedelta(hours=24)
AUTO_TOPUP_RETRY_AFTER = timedelta(hours=6)


@functools.lru_cache(maxsize=4)
def _client(api_key: str, api_base: str) -> stripe.StripeClient:
    # Retries are safe: the library sends an idempotency key with every retried POST.
    return stripe.StripeClient(api_key, base_addresses={"api": api_base}, max_network_retries=2)


def stripe_client() -> stripe.StripeClient:
    """The one Stripe client, pointed at ``STRIPE_API_BASE`` (real Stripe or a fake)."""
    if not settings.STRIPE_SECRET_KEY:
        raise PaymentsUnavailable("Card payments are not configured on this server.")
    return _client(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE)


def cents(value: Decimal) -> int:
    """Stripe's integer amount (cents) of a whole-cent Decimal."""
    return int((value * 100).to_integral_value())


@dataclass(frozen=True)
class TopUpQuote:
    amount: Decimal
    fee: Decimal
    total: Decimal


def topup_quote(amount: Decimal) -> TopUpQuote:
    """Validate a credit purchase and price it: the fee (rounded up to the cent) comes on top."""
    minimum, maximum = settings.TOPUP_MIN_AMOUNT, settings.TOPUP_MAX_AMOUNT
    if not amount.is_finite():  # the dashboard's form sends any text Decimal() reads: "Infinity"
        raise InvalidInput("amount must be a number of dollars, like 25.", param="amount")
    if amount < minimum:
        raise InvalidInput(f"amount must be at least ${minimum:,.2f}.", param="amount")
    if amount > maximum:
        raise InvalidInput(f"amount must be at most ${maximum:,.2f}.", param="amount")
    if amount != amount.quantize(CENT):  # after the bounds: 1e999999 cannot be quantized
        raise InvalidInput("amount must be in whole cents, like 25 or 25.50.", param="amount")
    amount = amount.quantize(CENT)
    fee = topup_fee(amount).quantize(CENT, rounding=ROUND_HALF_UP)
    return TopUpQuote(amount=amount, fee=fee, total=amount + fee)


def _owner_email(organization: Organization) -> str:
    owner = (
        Membership.objects.filter(organization=organization, role=Role.OWNER)
        .select_related("user")
        .order_by("created_at")
        .first()
    )
    return owner.user.email if owner is not None else ""


def stripe_customer_ensure(*, organization: Organization) -> str:
    """The organization's Stripe customer id, creating the customer on first use."""
    account = credit_account_for(organization.pk)
    if account.stripe_customer_id:
        return account.stripe_customer_id
    customer = stripe_client().v1.customers.create(
        params={
            "name": organization.name,
            "email": _owner_email(organization),
            "metadata": {"organization_id": str(organization.pk), "slug": organization.slug},
        },
        # Two first checkouts racing send the same key, so Stripe creates one customer.
        options={
            "idempotency_key": (
                f"rh-customer-{organization.pk}-{int(organization.created_at.timestamp())}"
            )
        },
    )
    CreditAccount.objects.filter(organization=organization, stripe_customer_id="").update(
        stripe_customer_id=customer.id
    )
    return CreditAccount.objects.values_list("stripe_customer_id", flat=True).get(
        organization=organization
    )


def _intent_metadata(payment: Payment) -> dict[str, str]:
    # The webhook finds the payment by these when it outruns our save of the intent id.
    return {
        "payment_id": str(payment.pk),
        "organization_id": str(payment.organization_id),
        "amount": f"{payment.amount:.2f}",
        "fee": f"{payment.fee:.2f}",
        "kind": payment.kind,
    }


def _intent_attach(payment: Payment, intent_id: str) -> None:
    # Only fill the blank id: a webhook may already have updated this row (status, charge).
    Payment.objects.filter(pk=payment.pk, stripe_payment_intent_id="").update(
        stripe_payment_intent_id=intent_id
    )
    payment.stripe_payment_intent_id = intent_id


def _payment_failed(payment: Payment, message: str) -> None:
    Payment.objects.filter(pk=payment.pk, status=PaymentStatus.PENDING).update(
        status=PaymentStatus.FAILED, failure_message=message[:300]
    )
    payment.status, payment.failure_message = PaymentStatus.FAILED, message[:300]


@dataclass(frozen=True)
class CheckoutStarted:
    payment: Payment
    checkout_url: str

    @property
    def session_id(self) -> str:
        return self.payment.stripe_payment_intent_id


def checkout_start(
    *,
    organization: Organization,
    amount: Decimal,
    created_by: User | None,
    save_payment_method: bool = False,
) -> CheckoutStarted:
    """Open a top-up: a pending ``Payment`` and its PaymentIntent for credits plus fee.

    The person pays on ``checkout_url`` (our page with Stripe.js); the webhook credits.
    """
    quote = topup_quote(amount)
    try:
        customer_id = stripe_customer_ensure(organization=organization)
    except stripe.StripeError as error:
        raise UpstreamFailed("Stripe could not be reached; try again.") from error
    payment = Payment.objects.create(
        organization=organization,
        kind=PaymentKind.CHECKOUT,
        amount=quote.amount,
        fee=quote.fee,
        created_by=created_by,
    )
    params: dict[str, Any] = {
        "amount": cents(quote.total),
        "currency": payment.currency,
        "customer": customer_id,
        "payment_method_types": ["card"],
        "metadata": _intent_metadata(payment),
    }
    if save_payment_method:
        # Card-level option rather than top-level setup_future_usage: both real Stripe and
        # localstripe accept it, and it keeps the card for automatic top-ups.
        params["payment_method_options"] = {"card": {"setup_future_usage": "off_session"}}
    try:
        intent = stripe_client().v1.payment_intents.create(
            # Why the ignore below: stripe's TypedDict of create params is stricter than the dict
            # built here field by field.
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"rh-payment-{payment.pk}"},
        )
    except stripe.StripeError as error:
        _payment_failed(payment, f"Stripe refused the payment: {error.user_message or error}")
        raise UpstreamFailed("Stripe could not start the payment; try again.") from error
    _intent_attach(payment, intent.id)
    return CheckoutStarted(
        payment=payment, checkout_url=f"{settings.SITE_URL}/billing/stripe/pay/{payment.pk}"
    )


def payment_client_secret(*, payment: Payment) -> str:
    """The PaymentIntent's client secret for Stripe.js; fetched, never stored."""
    intent = stripe_client().v1.payment_intents.retrieve(payment.stripe_payment_intent_id)
    return str(intent.client_secret)


def auto_topup_check(*, threshold: Decimal | None, amount: Decimal | None) -> None:
    """The rules of an auto top-up setting (``InvalidInput`` naming the field at fault): both
    values or neither, an amount a top-up may buy, a threshold from 0 to ``TOPUP_MAX_AMOUNT``
    and below the amount. ``AutoTopupInput`` (the API, and dashboard forms checked by it) and
    ``auto_topup_configure`` apply them; settings saved before a rule are left as they are."""
    if (threshold is None) != (amount is None):
        raise InvalidInput("Set both threshold and amount, or neither to turn auto top-up off.")
    if threshold is None or amount is None:
        return
    topup_quote(amount)
    if threshold < 0:
        raise InvalidInput("threshold must not be negative.", param="threshold")
    if threshold > settings.TOPUP_MAX_AMOUNT:  # bounds a mistyped threshold
        raise InvalidInput(
            f"threshold must be at most ${settings.TOPUP_MAX_AMOUNT:,.2f} (TOPUP_MAX_AMOUNT, "
            "the largest top-up).",
            param="threshold",
        )
    if threshold >= amount:
        # Then one top-up need not lift the balance above the threshold (20 and 10 from 5: 15),
        # the next minute's check charges the card again, and only the daily cap
        # (AUTO_TOPUPS_PER_ORGANIZATION_PER_DAY, _auto_topup_open) stopped it. Below the amount,
        # a top-up leaves at least the amount (the balance never goes below 0): above it.
        raise InvalidInput(
            f"threshold (${threshold:,.2f}) must be less than amount (${amount:,.2f}): one "
            "top-up must lift the balance above the threshold, else the card is charged again "
            f"at the next check, up to {settings.AUTO_TOPUPS_PER_ORGANIZATION_PER_DAY} times a "
            "day (AUTO_TOPUPS_PER_ORGANIZATION_PER_DAY).",
            param="threshold",
            metadata={"fields": ["threshold", "amount"]},
        )


def auto_topup_configure(
    *, organization: Organization, threshold: Decimal | None, amount: Decimal | None
) -> CreditAccount:
    """Turn automatic top-up on (both values) or off (both ``None``); ``auto_topup_check``."""
    auto_topup_check(threshold=threshold, amount=amount)
    account = credit_account_for(organization.pk)
    account.auto_topup_threshold = None if threshold is None else money(threshold)
    account.auto_topup_amount = None if amount is None else money(amount)
    account.save(update_fields=["auto_topup_threshold", "auto_topup_amount", "updated_at"])
    return account


def _auto_topup_open(account: CreditAccount) -> Payment | None:
    """Create the pending auto top-up, unless one is in flight or one was declined lately."""
    now = timezone.now()
    with transaction.atomic():
        # The row lock makes two schedulers agree on who creates the payment; it is held
        # only for these queries, never across the call to Stripe.
        locked = CreditAccount.objects.select_for_update().get(pk=account.pk)
        threshold, amount = locked.auto_topup_threshold, locked.auto_topup_amount
        if threshold is None or amount is None or locked.balance >= threshold:
            return None
        recent = Payment.objects.filter(organization_id=locked.pk, kind=PaymentKind.AUTO_TOPUP)
        if recent.filter(
            status=PaymentStatus.PENDING, created_at__gt=now - AUTO_TOPUP_PENDING_WINDOW
        ).exists():
            return None
        if recent.filter(
            status=PaymentStatus.FAILED, created_at__gt=now - AUTO_TOPUP_RETRY_AFTER
        ).exists():
            return None
        # Succeeded ones count too (and refunded or disputed ones: charged all the same): a
        # balance spent as fast as it is topped up would otherwise be charged at every check.
        per_day = settings.AUTO_TOPUPS_PER_ORGANIZATION_PER_DAY
        charged = recent.filter(created_at__gt=now - timedelta(days=1)).exclude(
            status__in=[PaymentStatus.FAILED, PaymentStatus.CANCELED]
        )
        if charged[:per_day].count() >= per_day:
            _auto_topup_capped(locked, charged, per_day)
            return None
        quote = topup_quote(amount.quantize(CENT))
        return Payment.objects.create(
            organization_id=locked.pk,
            kind=PaymentKind.AUTO_TOPUP,
            amount=quote.amount,
            fee=quote.fee,
        )


def _auto_topup_capped(account: CreditAccount, charged: QuerySet[Payment], per_day: int) -> None:
    """The daily cap holds a top-up back while the balance is under the threshold: log a warning
    and emit ``credits.auto_topup_capped`` once per capped stretch (named by the oldest charge
    counted; the cap lifts when it is a day old), not at every minute's check."""
    oldest = charged.order_by("created_at").first()
    if oldest is None:
        return
    resumes_at = oldest.created_at + timedelta(days=1)
    if not cache.add(f"auto-topup-capped:{account.pk}:{oldest.pk}", 1, timeout=86_400):
        return
    dollars = {  # the stored values carry 8 places
        name: str((getattr(account, field) or Decimal(0)).quantize(CENT))
        for name, field in [
            ("balance", "balance"),
            ("threshold", "auto_topup_threshold"),
            ("amount", "auto_topup_amount"),
        ]
    }
    logger.warning(
        "auto top-up of organization %s held back until %s: %s top-ups in 24 h "
        "(AUTO_TOPUPS_PER_ORGANIZATION_PER_DAY), balance %s under threshold %s",
        account.pk,
        resumes_at.isoformat(),
        per_day,
        dollars["balance"],
        dollars["threshold"],
    )
    webhook_event_emit(
        account.pk,
        WebhookEvent.AUTO_TOPUP_CAPPED,
        {**dollars, "topups_per_day": per_day, "resumes_at": resumes_at.isoformat()},
    )


def auto_topup_run(*, organization: Organization) -> Payment | None:
    """Charge the saved card off-session when the balance is below the threshold.

    Returns the payment it started (pending, or failed when declined), else ``None``.
    """
    account = credit_account_for(organization.pk)
    if not account.stripe_customer_id or not settings.STRIPE_SECRET_KEY:
        return None
    payment = _auto_topup_open(account)
    if payment is None:
        return None
    client = stripe_client()
    try:
        cards = client.v1.payment_methods.list(
            params={"customer": account.stripe_customer_id, "type": "card"}
        )
        if not cards.data:
            _payment_failed(payment, "No saved card for automatic top-up.")
            return payment
        intent = client.v1.payment_intents.create(
            params={
                "amount": cents(payment.amount + payment.fee),
                "currency": payment.currency,
                "customer": account.stripe_customer_id,
                "payment_method": cards.data[0].id,
                "confirm": True,
                "off_session": True,
                "metadata": _intent_metadata(payment),
            },
            options={"idempotency_key": f"rh-payment-{payment.pk}"},
        )
    except stripe.StripeError as error:
        # Declines (CardError), cards that need the customer present, and Stripe outages end
        # here. Should Stripe have charged despite an error, the webhook still finds this
        # payment by its metadata and credits it.
        logger.info("auto top-up of %s failed: %s", organization.slug, error)
        _payment_failed(payment, f"Automatic top-up failed: {error.user_message or error}")
        return payment
    _intent_attach(payment, intent.id)
    return payment


def auto_topups_due() -> list[Organization]:
    """Organizations with auto top-up on, a Stripe customer, and a balance under the threshold."""
    organization_ids = (
        CreditAccount.objects.filter(
            auto_topup_threshold__isnull=False,
            auto_topup_amount__isnull=False,
            balance__lt=F("auto_topup_threshold"),
        )
        .exclude(stripe_customer_id="")
        .values_list("organization_id", flat=True)
    )
    return list(Organization.objects.filter(pk__in=list(organization_ids)))
