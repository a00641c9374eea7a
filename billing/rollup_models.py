"""Daily usage rollups that settlement adds to with every usage record (``billing.rollups``).

Part of ``billing.models`` (re-exported there): the models are registered in the ``billing`` app
and import from ``billing.models`` as before.
"""

from __future__ import annotations

from django.db import models

from accounts.models import Organization, TenantModel
from billing.models import UsageStatus
from routerhub.money import MONEY_FIELD


class _DailyTotals(TenantModel):
    """What every usage rollup adds up per organization and UTC day (settlement's upserts add
    to these measures); each rollup names its own dimensions and unique constraint."""

    # Each rollup's unique constraint leads with the organization: no second index for it.
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    day = models.DateField()
    requests = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(**MONEY_FIELD, default=0)
    cache_write_tokens = models.BigIntegerField(default=0, db_default=0)  # of prompt_tokens

    class Meta:
        abstract = True


class UsageRollup(_DailyTotals):
    """Usage per organization, UTC day, key, model, provider, router and status; added to by
    settlement in the transaction that writes the usage records (``billing.rollups``), so it
    always equals the sum of those records. ``key_id`` is the key's id at settlement (0: none),
    kept without a foreign key so history outlives a deleted key, as the records' ``cost`` does."""

    key_id = models.BigIntegerField(default=0)
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=60, blank=True)
    router = models.CharField(max_length=80, blank=True)
    status = models.CharField(max_length=10, choices=UsageStatus.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "day", "key_id", "model", "provider", "router", "status"],
                name="usage_rollup_unique",
            ),
        ]


class UsageRollupAllKeys(_DailyTotals):
    """``UsageRollup`` summed over keys: what the usage API reads when it neither groups nor
    filters by key (the common case), about 25 times fewer rows for an organization with 100 keys."""

    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=60, blank=True)
    router = models.CharField(max_length=80, blank=True)
    status = models.CharField(max_length=10, choices=UsageStatus.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "day", "model", "provider", "router", "status"],
                name="usage_rollup_all_keys_unique",
            ),
        ]


class UsageRollupKeyDay(_DailyTotals):
    """``UsageRollup`` summed per key and day only: a key's spend per window and usage grouped by
    key without other filters (a few rows per key and day, however many models it used)."""

    key_id = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "day", "key_id"], name="usage_rollup_key_day_unique"
            ),
        ]
        indexes = [models.Index(fields=["key_id", "day"], name="usage_rollup_key_day")]
