"""Limit windows of API keys: daily, weekly (from Monday) and monthly resets at 00:00 UTC."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from routerhub.money import ZERO


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


# A limit that never resets has one window, marked with the epoch.
ONE_WINDOW = datetime(1970, 1, 1, tzinfo=UTC)


def window_rolled(current: datetime | None, row_start: datetime | None) -> bool:
    """Whether a key's window row (or a reading of it) that started at ``row_start`` is over
    when its period now starts at ``current``: only a later start rolls a window. An earlier or
    no start (a period made longer, or one that never resets) carries the row's window on, with
    its spend and holds (``billing.key_windows``); reads must agree with the holds on this."""
    return (current or ONE_WINDOW) > (row_start or ONE_WINDOW)


def window_end(reset: str | None, now: datetime) -> datetime | None:
    start = window_start(reset, now)
    if start is None:
        return None
    if reset == "daily":
        return start + timedelta(days=1)
    if reset == "weekly":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


@dataclass(frozen=True, slots=True)
class WindowLeft:
    """What one key's limit window leaves and the period it resets on (None: never); whose
    window it is when the reader knows (``billing.selectors.key_limit_windows``: a refusal names that key)."""

    remaining: Decimal
    reset: str | None
    key_id: int | None = None
    label: str = ""  # the key's prefix and name (``accounts.keys.key_label``), never its secret


def window_left(
    limit: Decimal, reset: str | None, row: tuple[datetime | None, Decimal] | None, now: datetime
) -> WindowLeft:
    """What a limit leaves of a window row (its start and spent plus held; None: no row yet), by
    the holds' rule: a window that is over counts nothing (``window_rolled``)."""
    used = ZERO if row is None or window_rolled(window_start(reset, now), row[0]) else row[1]
    return WindowLeft(max(ZERO, limit - used), reset)


def window_tightest(windows: Iterable[WindowLeft], now: datetime) -> WindowLeft | None:
    """The window that leaves the least: what the key can still hold, and until when. Of two
    that leave the same, the one that ends later or never (what is left grows only when both
    have reset); of two that also end together, the first given (``key_limit_windows``: the
    older key). Not always the window that refuses a hold of more: a hold is refused by the
    first window in key id order that cannot cover it (``billing.key_windows``)."""
    tightest: WindowLeft | None = None
    for window in windows:
        if tightest is None or _tighter(window, tightest, now):
            tightest = window
    return tightest


def _tighter(window: WindowLeft, than: WindowLeft, now: datetime) -> bool:
    if window.remaining != than.remaining:
        return window.remaining < than.remaining
    end, than_end = window_end(window.reset, now), window_end(than.reset, now)
    return than_end is not None and (end is None or end > than_end)
