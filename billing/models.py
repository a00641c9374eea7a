"""Credit accounts, the append-only ledger, reservations, key spend windows and usage records.

Invariants (enforced in SQL, see ``services``): ``balance >= 0``; ``reserved >= 0`` (``reserved`` is
``CreditHold.held - CreditAccount.released``: holds and the account live in separate rows, see
``CreditHold``); ``balance`` equals the sum of the organization's ledger amounts; every usage record with a
cost has exactly one ledger entry with ``idempotency_key = "usage:<generation id>"``.

``UsageRecord`` and ``LedgerEntry`` are partitioned by month of ``created_at`` in PostgreSQL
(``billing.partitions``): their database primary key is ``(id, created_at)`` while Django keeps
``id`` as the model's primary key (ids come from one sequence per table, so ``id`` alone is
unique too). A partitioned table cannot hold a unique constraint without the partition key, so
the two uniqueness guarantees live in small unpartitioned tables that a trigger fills in the
same statement as every insert: ``UsageGeneration`` (once per generation id) and
``LedgerIdempotency`` (once per ledger idempotency key).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import connection, models
from django.db.models import Q

from accounts.models import ApiKey, Organization, TenantModel, TenantQuerySet
from routerhub.money import MONEY_FIELD


class CreditAccount(models.Model):
    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="credit_account", primary_key=True
    )
    balance = models.DecimalField(**MONEY_FIELD, default=0)
    # Monotonic: holds released or charged, and decreases of the balance beyond them.
    released = models.DecimalField(**MONEY_FIELD, default=0, db_default=0)
    total_purchased = models.DecimalField(**MONEY_FIELD, default=0)
    total_used = models.DecimalField(**MONEY_FIELD, default=0)
    stripe_customer_id = models.CharField(max_length=64, blank=True)
    auto_topup_threshold = models.DecimalField(**MONEY_FIELD, null=True, blank=True)
    auto_topup_amount = models.DecimalField(**MONEY_FIELD, null=True, blank=True)
    budget_alert_sent = models.JSONField(
        default=dict, blank=True, help_text="Month → highest alert threshold already emailed."
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="balance_not_negative"),
            models.CheckConstraint(condition=Q(released__gte=0), name="released_not_negative"),
        ]

    def save(self, *args: Any, **kwargs: Any) -> None:
        adding = self._state.adding
        super().save(*args, **kwargs)
        if adding and connection.vendor != "postgresql":  # on PostgreSQL a trigger inserts it
            CreditHold.objects.get_or_create(account=self)

    @property
    def reserved(self) -> Decimal:
        """Credits held by requests in flight (read ``select_related("hold")`` for one snapshot)."""
        try:
            held = self.hold.held
        except ObjectDoesNotExist:  # an unsaved account
            return Decimal(0)
        return held - self.released


class CreditHold(models.Model):
    """An organization's holds apart from its balance, so a reservation never waits for a settler
    (README, "Credit holds apart from the balance": the invariant and every race)."""

    account = models.OneToOneField(
        CreditAccount,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="hold",
        db_column="organization_id",
    )
    held = models.DecimalField(**MONEY_FIELD, default=0, db_default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(held__gte=0), name="held_not_negative"),
        ]


class LedgerKind(models.TextChoices):
    TOPUP = "topup", "Top-up"
    USAGE = "usage", "Usage"
    REFUND = "refund", "Refund"
    ADJUSTMENT = "adjustment", "Adjustment"
    PROMOTION = "promotion", "Promotional grant"


class LedgerEntry(TenantModel):
    """One change of a balance; never updated or deleted."""

    kind = models.CharField(max_length=12, choices=LedgerKind.choices)
    amount = models.DecimalField(**MONEY_FIELD, help_text="Signed USD: credits > 0, charges < 0.")
    balance_after = models.DecimalField(**MONEY_FIELD)
    # Unique through ``LedgerIdempotency`` (a trigger claims the key on every insert).
    idempotency_key = models.CharField(max_length=200, db_index=True)
    description = models.CharField(max_length=300, blank=True)
    reference = models.CharField(max_length=120, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"])]


class KeySpendWindow(models.Model):
    """Spend of a key in its current limit window; reserved and spent move atomically with it."""

    key = models.OneToOneField(ApiKey, on_delete=models.CASCADE, primary_key=True, related_name="+")
    window_start = models.DateTimeField(null=True)
    spent = models.DecimalField(**MONEY_FIELD, default=0)
    reserved = models.DecimalField(**MONEY_FIELD, default=0)
    # The window whose ``budget.threshold`` event was emitted (once per window).
    threshold_emitted_for = models.DateTimeField(null=True, blank=True)


class ReservationState(models.TextChoices):
    HELD = "held", "Held"
    # The gateway said the request has nothing to charge (it failed before any answer); its
    # usage draft will release the hold, or the sweep will, for free.
    FREE = "free", "Held, nothing to charge"
    SETTLED = "settled", "Settled"
    RELEASED = "released", "Released"


class Reservation(TenantModel):
    """Credit held for one in-flight request; settled or released exactly once.

    A hold still ``held`` when it expires lost its usage draft (a Redis without its data, a
    worker killed mid-request): the sweep charges it at its amount (``reconciled_from_hold``).
    Only a hold the gateway marked ``free`` is released without a charge.
    """

    generation_id = models.CharField(max_length=64, unique=True)
    key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, related_name="+")
    amount = models.DecimalField(**MONEY_FIELD)
    key_window_start = models.DateTimeField(null=True)
    # The windows of the key's ancestors with a limit this hold counts against too, and the
    # key's own when its limit never resets, ``[[key id, window start (ISO 8601) or null], ...]``
    # (``billing.key_windows``); ``[]`` for none; null only on holds taken before.
    ancestor_windows = models.JSONField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=ReservationState.choices, default="held")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["state", "expires_at"])]


class UsageStatus(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    # Neutral: the client leaving and the server cancelling the handler both abort a request;
    # the record's error_type says which (``UsageRecord.status_label``).
    ABORTED = "aborted", "Aborted (client disconnected or server cancelled)"


# What stopped an aborted request, as its record's ``error_type`` names it (the gateway's
# ``Exchange.cancelled_by``); an aborted record without one of these shows the neutral label.
ABORT_CAUSES = {
    "client_disconnected": "Aborted: client disconnected",
    "server_cancelled": "Aborted: server cancelled (shutdown or deadline)",
}


class UsageFlag(models.TextChoices):
    """What a usage record's ``flags`` may name: billing that needs a person's eye."""

    OVER_HOLD = "over_hold", "Charged more than its hold"
    SHORTFALL = "shortfall", "Balance ran out: charged less than its cost"
    USAGE_CLAMPED = "usage_clamped", "Provider reported impossible usage: estimated"
    USAGE_ESTIMATED = "usage_estimated", "Provider reported no usage: estimated"
    USAGE_FLOORED = "usage_floored", "Own host reported less than estimated: estimate billed"
    RECONCILED_FROM_HOLD = "reconciled_from_hold", "Usage never arrived: charged its hold"
    UNPRICED_TIER = "unpriced_tier", "Provider served a tier the catalog does not price"


class UsageRecord(TenantModel):
    """One request through the gateway; written exactly once (its generation id is claimed in
    ``UsageGeneration`` by the insert's trigger)."""

    generation_id = models.CharField(max_length=64, db_index=True)
    key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, related_name="+")
    model = models.CharField(max_length=200, blank=True)
    requested_model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=60, blank=True)
    router = models.CharField(max_length=80, blank=True)
    # The serving router's primary key: routers are joined on it, never on the name above (a
    # slug can be reused). A plain id, not a foreign key: billing does not depend on training,
    # and usage history outlives a deleted router.
    router_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    router_version = models.PositiveIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.IntegerField(default=0, db_default=0)  # of prompt_tokens; no CHECK
    cost = models.DecimalField(**MONEY_FIELD, default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=UsageStatus.choices)
    error_type = models.CharField(max_length=60, blank=True)
    streamed = models.BooleanField(default=False)
    is_byok = models.BooleanField(default=False)
    prompt = models.TextField(blank=True, help_text="Kept only when the organization opted in.")
    # Database defaults: rows inserted by the previous release's settlement (rolling deploy).
    response = models.TextField(
        blank=True, default="", db_default="", help_text="Kept only when the organization opted in."
    )
    trace = models.TextField(
        blank=True,
        default="",
        db_default="",
        help_text="JSON: the routing decision and the fallbacks tried.",
    )
    # A database default too: rows inserted in raw SQL without the column (settlement code of
    # the previous release, during a rolling deploy) are unflagged, not refused.
    flags = models.CharField(
        max_length=100,
        blank=True,
        default="",
        db_default="",
        help_text="Comma-separated UsageFlag values.",
    )
    created_at = models.DateTimeField(db_index=True)

    @property
    def trace_data(self) -> dict[str, Any]:
        """The routing decision (``routing``) and fallbacks tried (``fallbacks``), if any."""
        if not self.trace:
            return {}
        data = json.loads(self.trace)
        return data if isinstance(data, dict) else {}

    @property
    def status_label(self) -> str:
        """The status for people: an aborted request says who stopped it when the record knows."""
        if self.status == UsageStatus.ABORTED and self.error_type in ABORT_CAUSES:
            return ABORT_CAUSES[self.error_type]
        return (
            str(UsageStatus(self.status).label)
            if self.status in UsageStatus.values
            else self.status
        )

    @property
    def flag_list(self) -> list[str]:
        return [flag for flag in self.flags.split(",") if flag]

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["key", "created_at"]),
            # Only records that kept a prompt: what the retention task looks for.
            models.Index(fields=["created_at"], condition=~Q(prompt=""), name="usage_prompt_kept"),
        ]


class UsageGeneration(models.Model):
    """A generation id already settled: the uniqueness of ``UsageRecord.generation_id``.

    Inserted by a trigger on ``billing_usagerecord`` in the statement that inserts the record
    (any insert path: settlement's, the ORM's, ``COPY``); a second record with the same id, in
    any month, fails on this primary key. Never released when a record is deleted: a settled
    generation id is not settled again. Retention (``billing.partitions``) removes the rows of
    dropped months. What ``Feedback`` points at."""

    generation_id = models.CharField(max_length=64, primary_key=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(db_index=True)


class LedgerIdempotency(models.Model):
    """A ledger idempotency key in use: the uniqueness of ``LedgerEntry.idempotency_key``.

    Inserted by a trigger on ``billing_ledgerentry`` for every entry and deleted by one when the
    entry is deleted (settlement rewrites an entry written against a stale balance)."""

    idempotency_key = models.CharField(max_length=200, primary_key=True)
    created_at = models.DateTimeField()


class UsageStep(models.Model):
    """One provider call of a request that made several (a pipeline's step): a child of the
    request's ``UsageRecord``, written in the same settlement transaction. The parent record is
    the one charge (one ledger entry) and carries the total; its steps' costs sum to it."""

    generation_id = models.CharField(max_length=64, db_index=True)  # the parent's
    step = models.PositiveSmallIntegerField()
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=60, blank=True)
    status = models.CharField(max_length=10)
    gate = models.CharField(max_length=20, blank=True)  # passed | failed | none | not_called
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(**MONEY_FIELD, default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["generation_id", "step"], name="unique_usage_step"),
        ]
        ordering = ["generation_id", "step"]


class UsageDecision(models.Model):
    """A routed request's decision log (one per generation, written by settlement with its usage
    record): the served choice and its probability under the served policy, the shadow
    version's choice on the same prompt, and the predicted score and cost of each candidate.
    Off-policy evaluation (``routing.lifecycle_report``) joins it to feedback."""

    generation_id = models.CharField(max_length=64, unique=True)  # the usage record's
    router_id = models.BigIntegerField()
    served_version = models.PositiveIntegerField()
    served_model = models.CharField(max_length=200)
    greedy_model = models.CharField(max_length=200)  # what the served version ranked first
    propensity = models.FloatField()  # P(served_model) under the served policy
    shadow_version = models.PositiveIntegerField(null=True, blank=True)
    shadow_model = models.CharField(max_length=200, blank=True)
    # JSON text {model: [predicted score, expected cost USD]}: the served version's prediction
    # for every candidate (text, so settlement's raw insert stores it as it is)
    predicted = models.TextField(default="{}")
    # The request's task hint (``router.task``, trimmed; at most 200 characters, as a request may
    # name), "" without one. A database default: a settler of the previous release inserts
    # without the column.
    task_hint = models.CharField(max_length=200, blank=True, default="", db_default="")
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["router_id", "-created_at"])]


# The rest of the app's models live in sibling modules (this one stays within the size limit);
# imported here, after what they use, so ``billing.models`` names every model as before.
from billing.payment_models import Payment, PaymentKind, PaymentStatus, StripeEvent  # noqa: E402
from billing.rollup_models import UsageRollup, UsageRollupAllKeys, UsageRollupKeyDay  # noqa: E402

__all__ = [
    "CreditAccount",
    "CreditHold",
    "KeySpendWindow",
    "LedgerEntry",
    "LedgerIdempotency",
    "LedgerKind",
    "Payment",
    "PaymentKind",
    "PaymentStatus",
    "Reservation",
    "ReservationState",
    "StripeEvent",
    "UsageDecision",
    "UsageFlag",
    "UsageGeneration",
    "UsageRecord",
    "UsageRollup",
    "UsageRollupAllKeys",
    "UsageRollupKeyDay",
    "UsageStatus",
    "UsageStep",
]
