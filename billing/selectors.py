"""Reads for billing: balances, key spend, usage aggregates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
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


GROUPINGS = {"day", "model", "key", "router", "provider"}


@dataclass(frozen=True)
class UsageFilter:
    start: datetime | None = None
    end: datetime | None = None
    model: str | None = None
    key_id: int | None = None
    status: str | None = None


def usage_records(*, organization_id: int, filters: UsageFilter) -> QuerySet[UsageRecord]:
    rows = UsageRecord.objects.filter(organization_id=organization_id)
    if filters.start is not None:
        rows = rows.filter(created_at__gte=filters.start)
    if filters.end is not None:
        rows = rows.filter(created_at__lt=filters.end)
    if filters.model:
        rows = rows.filter(model=filters.model)
    if filters.key_id is not None:
        rows = rows.filter(key_id=filters.key_id)
    if filters.status:
        rows = rows.filter(status=filters.status)
    return rows


def usage_aggregate(
    *, organization_id: int, filters: UsageFilter, group_by: str
) -> list[dict[str, Any]]:
    """Requests, tokens and cost per day, model, key, router or provider."""
    rows = usage_records(organization_id=organization_id, filters=filters)
    if group_by == "day":
        rows = rows.annotate(group=TruncDate("created_at"))
    elif group_by == "key":
        rows = rows.annotate(group=Coalesce(F("key__name"), Value("(deleted key)")))
    else:
        rows = rows.annotate(group=F(group_by))
    aggregated = (
        rows.values("group")
        .annotate(
            requests=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost=Sum("cost"),
        )
        .order_by("group")
    )
    return [dict(row) for row in aggregated]


def spend_by_day_and_model(*, organization_id: int, since: datetime) -> list[dict[str, Any]]:
    """Rows of (day, model, cost, requests) for the usage chart."""
    rows = (
        UsageRecord.objects.filter(organization_id=organization_id, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day", "model")
        .annotate(cost=Sum("cost"), requests=Count("id"))
        .order_by("day", "model")
    )
    return [dict(row) for row in rows]
