"""Limit windows of API keys: daily, weekly (from Monday) and monthly resets at 00:00 UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class LimitBound:
    """A spend limit a key's spend counts against besides its own: that of a key up its
    ``created_by_key`` lineage (a hierarchical budget, ``billing.key_windows``)."""

    key_id: int
    limit: Decimal
    reset: str | None  # daily, weekly, monthly; None: one window that never resets
    label: str  # the key's prefix and name, for a refusal (never its secret)


def window_start(reset: str | None, now: datetime) -> datetime | None:
    """Start of the window containing ``now``; ``None`` for a limit that never resets."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if reset == "daily":
        return day
    if reset == "weekly":
        return day - timedelta(days=day.weekday())
    if reset == "monthly":
        return day.replace(day=1)
    return None


def window_end(reset: str | None, now: datetime) -> datetime | None:
    start = window_start(reset, now)
    if start is None:
        return None
    if reset == "daily":
        return start + timedelta(days=1)
    if reset == "weekly":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)
