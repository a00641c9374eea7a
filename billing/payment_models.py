"""Stripe credit purchases (``Payment``) and the webhook events already handled (``StripeEvent``).

Part of ``billing.models`` (re-exported there): the models are registered in the ``billing`` app
and import from ``billing.models`` as before.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from accounts.models import Organization, TenantModel
from routerhub.money import MONEY_FIELD


class PaymentKind(models.TextChoices):
    CHECKOUT = "checkout", "Checkout"
    AUTO_TOPUP = "auto_topup", "Automatic top-up"


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
    REFUNDED = "refunded", "Refunded"
    DISPUTED = "disputed", "Disputed"


class Payment(TenantModel):
    """A credit purchase through Stripe: ``amount`` of credits plus ``fee``, charged together.

    Credits move only through the ledger (``stripe:<payment intent id>`` and friends); this row
    is the receipt and the link between Stripe's objects and the organization.
    """

    kind = models.CharField(max_length=12, choices=PaymentKind.choices)
    status = models.CharField(
        max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    amount = models.DecimalField(**MONEY_FIELD, help_text="Credits bought (USD).")
    fee = models.DecimalField(**MONEY_FIELD, help_text="Platform fee charged on top (USD).")
    currency = models.CharField(max_length=3, default="usd")
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True)
    stripe_charge_id = models.CharField(max_length=255, blank=True, db_index=True)
    receipt_url = models.URLField(max_length=500, blank=True)
    refunded_credits = models.DecimalField(
        **MONEY_FIELD, default=0, help_text="Credits taken back for refunds so far."
    )
    failure_message = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        "accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_payment_intent_id"],
                condition=~Q(stripe_payment_intent_id=""),
                name="unique_payment_intent",
            ),
        ]


class StripeEvent(models.Model):
    """A Stripe webhook event already handled; its unique id makes redelivery a no-op."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    organization = models.ForeignKey(
        Organization, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    outcome = models.CharField(max_length=20, help_text="processed or ignored")
    livemode = models.BooleanField(default=False)
    received_at = models.DateTimeField(auto_now_add=True)
