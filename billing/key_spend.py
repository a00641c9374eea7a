"""Spend per key for the Keys page: the last 30 days and all time, with request counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.utils import timezone

from billing.models import UsageRecord
from routerhub.money import ZERO

RECENT_DAYS = 30


@dataclass(frozen=True)
class KeySpend:
    total: Decimal
    recent: Decimal  # the last ``RECENT_DAYS`` days
    requests: int


def key_spend(*, organization_id: int, key_ids: list[int]) -> dict[int, KeySpend]:
    """What each of ``key_ids`` (the organization's keys on one page) spent, for those that made
    requests (one grouped query over their records only)."""
    since = timezone.now() - timedelta(days=RECENT_DAYS)
    rows = (
        UsageRecord.objects.filter(organization_id=organization_id, key_id__in=key_ids)
        .values("key_id")
        .annotate(
            total=Sum("cost"),
            recent=Sum("cost", filter=Q(created_at__gte=since)),
            requests=Count("id"),
        )
    )
    return {
        row["key_id"]: KeySpend(row["total"] or ZERO, row["recent"] or ZERO, row["requests"])
        for row in rows
    }
