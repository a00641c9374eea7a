"""Reads for billing: balances, key spend, usage aggregates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from accounts.models import ApiKey
from billing.models import KeySpendWindow, UsageRecord
from billing.windows import window_end, window_start
from routerhub.money import ZERO


@dataclass(frozen=True)
class KeyUsage:
    usage: Decimal
    usage_daily: Decimal
    usage_weekly: Decimal
    usage_monthly: Decimal
    limit_remaining: Decimal | None
    limit_reset_at: datetime | None


def _spent_since(key_id: int, since: datetime | None) -> Decimal:
    rows = UsageRecord.objects.filter(key_id=key_id)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    return rows.aggregate(total=Sum("cost"))["total"] or ZERO


def key_usage(*, key: ApiKey) -> KeyUsage:
    """Spend of a key overall and per window, and what its limit leaves (reservations count)."""
    now = timezone.now()
    remaining: Decimal | None = None
    if key.limit is not None:
        window = KeySpendWindow.objects.filter(key=key).first()
        current = window_start(key.limit_reset, now)
        in_window = ZERO
        if window is not None and window.window_start == current:
            in_window = window.spent + window.reserved
        remaining = max(ZERO, key.limit - in_window)
    return KeyUsage(
        usage=_spent_since(key.pk, None),
        usage_daily=_spent_since(key.pk, window_start("daily", now)),
        usage_weekly=_spent_since(key.pk, window_start("weekly", now)),
        usage_monthly=_spent_since(key.pk, window_start("monthly", now)),
        limit_remaining=remaining,
        limit_reset_at=window_end(key.limit_reset, now) if key.limit is not None else None,
    )
