"""A hold's key spend windows: the key's own limit and the limits of the keys up its lineage.

A key a management key made (``accounts.key_lineage``) spends against its own limit and against
the limit of every key it descends from (a hierarchical budget; README, "A key acts as its
creator, never more"): a management key allowed 10 USD a day cannot mint 100 keys of 10 USD a
day each and so spend 1,000; together, its keys and itself spend at most 10 in its window.

A hold of such a key locks the spend window (``KeySpendWindow``) of the key and of each ancestor
with a limit, in key id order (an ancestor is older than the keys made from it, so the root comes
first; settlement updates windows in the same order), in the transaction that holds the credits.
Each window is checked and charged as the key's own always was; the hold records the ancestors'
windows (``Reservation.ancestor_windows``) so that settlement releases the hold and counts the
charge in each of them (``billing.settlement``). A key no key made (every key a person made) has
no ancestors: its hold is the one statement or the one window it always was.

The key's own window is recorded in ``key_window_start`` when its limit resets; a limit that never
resets has no start to record there (NULL would read as "no window"), so that window is recorded
in ``ancestor_windows`` like an ancestor's, as ``[key id, null]``. Before, it was recorded nowhere
and settlement never released it: its holds piled up until the key was refused far short of its
limit. Every hold taken since records a list (``[]`` for none, also ``billing.holds``); a hold
with none (NULL) was taken before, and counts in its key's never-resetting window when the key's
limit never resets now (``legacy_never_reset``).

A window's start is its epoch: a row starts over only at a later start (``window_rolled``), never
back to an earlier one nor to NULL, so the start a hold recorded names the one window it was
taken in, and a release (``billing.settlement``) finds that window or none.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from accounts.models import ApiKey
from billing.models import KeySpendWindow
from billing.window_spend import (
    WindowSpend,
    budget_threshold_emit,
    threshold_crossed,
    window_spend_note,
)
from billing.windows import (
    ONE_WINDOW,
    LimitBound,
    WindowLeft,
    window_end,
    window_left,
    window_rolled,
    window_start,
    window_tightest,
)
from routerhub.errors import KeyLimitReached
from routerhub.money import ZERO, money_str

if TYPE_CHECKING:
    from billing.services import ReservationRequest

AncestorWindows = list[list[Any]]  # [[key id, window start in ISO 8601 or None], ...]


def key_windows_reserve(
    request: ReservationRequest, now: datetime
) -> tuple[datetime | None, AncestorWindows]:
    """Hold ``request.amount`` in the window of the key (when it has a limit) and of each
    ancestor with one; returns the key's window start and the ancestors' windows to record on
    the reservation (the key's own too when its limit never resets; module docstring).

    Raises ``KeyLimitReached`` (403) naming the key, or the ancestor, whose window it would
    exceed: the caller's transaction then rolls back what was held in the others."""
    bounds = list(request.ancestors)
    if request.key_id is not None and request.key_limit is not None:
        bounds.append(LimitBound(request.key_id, request.key_limit, request.key_limit_reset, ""))
    own: datetime | None = None
    windows: AncestorWindows = []
    seen: dict[int, WindowLeft] = {}  # what each window read so far left before this hold
    ordered = sorted(bounds, key=lambda b: b.key_id)
    for bound in ordered:
        try:
            start = _window_reserve(request, bound, now, seen)
        except KeyLimitReached as refused:
            refused.metadata |= _what_is_left(ordered, seen, now)
            raise
        if bound.key_id == request.key_id and start is not None:
            own = start
        else:  # an ancestor's window, or the key's own that never resets
            windows.append([bound.key_id, start.isoformat() if start else None])
    return own, windows


def _what_is_left(
    bounds: list[LimitBound], seen: dict[int, WindowLeft], now: datetime
) -> dict[str, str | None]:
    """A refusal's ``remaining`` and ``reset_at``: what the key can still spend (the tightest of
    all its windows, as ``GET /api/v1/key`` says it) and when that window ends. Never an
    ancestor's limit nor spend as such (README, hierarchical budget). The windows after the
    refusing one (higher key ids) are read unlocked: this transaction holds nothing in them."""
    rest = [bound for bound in bounds if bound.key_id not in seen]
    rows = {
        row.key_id: (row.window_start, row.spent + row.reserved)
        for row in KeySpendWindow.objects.filter(key_id__in=[b.key_id for b in rest])
    }
    unread = (window_left(b.limit, b.reset, rows.get(b.key_id), now) for b in rest)
    # Never None: the refusing window was seen.
    tightest = window_tightest([*seen.values(), *unread], now) or WindowLeft(ZERO, None)
    end = window_end(tightest.reset, now)
    return {
        "remaining": money_str(tightest.remaining),
        "reset_at": end.isoformat() if end else None,
    }


def _window_reserve(
    request: ReservationRequest, bound: LimitBound, now: datetime, seen: dict[int, WindowLeft]
) -> datetime | None:
    """Hold ``amount`` inside one key's limit window, resetting the window when it rolled over;
    notes in ``seen`` what the window left before it."""
    current = window_start(bound.reset, now)
    KeySpendWindow.objects.get_or_create(key_id=bound.key_id, defaults={"window_start": current})
    window = KeySpendWindow.objects.select_for_update().get(key_id=bound.key_id)
    if window_rolled(current, window.window_start):
        # The window rolled: spend and holds of the old window no longer count against this one.
        window.window_start, window.spent, window.reserved = current, ZERO, ZERO
    # A start earlier than the row's (a reset period made longer, while a key's cached lineage
    # still carries the old one) does not reset it: that would forgive the spend in it, and the
    # holds in it would then be released from a window that no longer counts them. The hold
    # counts in the row's window.
    current = window.window_start
    seen[bound.key_id] = WindowLeft(
        max(ZERO, bound.limit - window.spent - window.reserved), bound.reset
    )
    if window.spent + window.reserved + request.amount > bound.limit:
        window_spend_note(bound.key_id, current, window.spent + window.reserved)
        raise _limit_reached(request, bound)
    window.reserved += request.amount
    _threshold_check(request, bound, window)
    window.save()
    window_spend_note(bound.key_id, current, window.spent + window.reserved)
    return current


def _limit_reached(request: ReservationRequest, bound: LimitBound) -> KeyLimitReached:
    metadata = {"needed": money_str(request.amount), "reset": bound.reset}
    if bound.key_id != request.key_id:
        # Not the ancestor's limit nor its spend; the caller adds what this key can still spend
        # (``_what_is_left``), which ``GET /api/v1/key`` tells its holder anyway.
        message = (
            f"The key {bound.label} this key was made from has reached its credit limit for the "
            "current window: a key made by a key spends against that key's limit too."
        )
        return KeyLimitReached(message, metadata={**metadata, "limited_by": bound.label})
    message = "This key has reached its credit limit for the current window."
    return KeyLimitReached(message, metadata={**metadata, "limit": money_str(bound.limit)})


def _threshold_check(
    request: ReservationRequest, bound: LimitBound, window: KeySpendWindow
) -> None:
    """Emit ``budget.threshold`` when this hold takes the window past the share, once per window
    (marked on the locked window row, committed with the hold; emitted after that commit)."""
    used = window.spent + window.reserved
    marker = window.window_start or ONE_WINDOW
    if window.threshold_emitted_for == marker or not threshold_crossed(used, bound.limit):
        return
    window.threshold_emitted_for = marker
    spend = WindowSpend(bound.reset, window.window_start, used, bound.limit)
    budget_threshold_emit(organization_id=request.organization_id, key_id=bound.key_id, spend=spend)


def hold_windows(
    key_id: int | None,
    key_window_start: datetime | None,
    ancestor_windows: Any,
    never_reset: Collection[int] = (),
) -> Iterator[tuple[int, datetime | None]]:
    """The windows a hold counts in, as (key id, window start): the key's own (when it was
    held in one that resets) and those in ``ancestor_windows`` (its ancestors', and its own
    that never resets; as stored: a list, or its JSON text from a raw cursor). A hold taken
    before windows were always recorded (NULL) whose key is in ``never_reset``
    (``legacy_never_reset``) counts in that key's never-resetting window."""
    if key_id is not None and key_window_start is not None:
        yield key_id, key_window_start
    legacy = ancestor_windows is None and key_window_start is None
    if key_id is not None and legacy and key_id in never_reset:
        yield key_id, None
    if isinstance(ancestor_windows, str):
        ancestor_windows = orjson.loads(ancestor_windows)
    for ancestor_id, start in ancestor_windows or ():
        yield ancestor_id, datetime.fromisoformat(start) if start else None


def legacy_never_reset(holds: Iterable[tuple[int | None, datetime | None, Any]]) -> set[int]:
    """Of the keys of ``holds`` (key id, key window start, ancestor windows) that recorded no
    windows (taken before they were always recorded), those whose limit never resets now: such
    a hold was held in that window (or, if the limit was set after the hold, in none: the window
    is then released of it all the same, never below zero; ``billing.settlement``). One query,
    and only while such holds remain."""
    candidates = {k for k, start, windows in holds if k and start is None and windows is None}
    if not candidates:
        return set()
    return set(
        ApiKey.objects.filter(
            pk__in=candidates, limit__isnull=False, limit_reset__isnull=True
        ).values_list("pk", flat=True)
    )
