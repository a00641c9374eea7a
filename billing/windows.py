"""Limit windows of API keys: daily, weekly (from Monday) and monthly resets at 00:00 UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


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
