"""Reconcile key spend windows' ``reserved`` with the open holds that count in them.

Two faults left ``KeySpendWindow.reserved`` above what is really held: before holds recorded a
key's own never-resetting window (``billing.key_windows``), settlement never released that
window, so its ``reserved`` kept long-settled holds and the key was refused far short of its
limit; and during a rolling deploy a settler of the previous release ignores
``Reservation.ancestor_windows``, leaving the ancestors' ``reserved`` stale. A beat task
(``billing.key_windows_reconcile``) sets, for a bounded batch of windows a run (a key id cursor
in the cache, from the start again at the end), ``reserved`` to the sum of the open holds
(``held``/``free``) that count in each, as settlement decides it (``hold_windows``). ``spent``
is never touched.

Why ``spent`` is not rebuilt (the old settlement never counted the charges of the holds it
jammed, so a lifetime key's ``spent`` is low by them): no durable row says which settled holds
were in the window. Those holds recorded no window (``key_window_start`` and
``ancestor_windows`` NULL, or an ancestors-only list), exactly as a hold of the same key taken
while it had no limit, which counts in no window; neither the window row (no creation time) nor
the key (no history of its limit) says when the lifetime limit began. Summing every such hold's
usage record would charge the window with what the key spent before it had a limit (a key used
a year unlimited, then given 10 USD, would be refused at once); summing none is what the window
has now. Usage records may also be gone (``USAGE_RECORD_RETENTION_MONTHS``). The one trace of the
jammed holds, ``reserved`` above the open holds, is their amounts (not their costs) and is what
this task overwrites. A window's spend is therefore only ever added to by settlement.

The windows are locked in key id order (the global lock order: windows come last, in key id
order; tests/billing/test_lock_order.py) before the holds are read, so a hold being taken (its
window row locked until its reservation commits) or settled (its window row updated after its
reservation) is counted exactly once: committed and open when read, it is still to be released.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from prometheus_client import Counter

from billing.key_windows import hold_windows, legacy_never_reset
from billing.models import KeySpendWindow, Reservation
from billing.settlement import _OPEN
from routerhub.money import ZERO

logger = logging.getLogger(__name__)

CURSOR = "billing:key_windows_reconcile:cursor"

WINDOWS_REPAIRED = Counter(
    "routerhub_key_windows_reserved_repaired",
    "Key spend windows whose reserved amount the reconcile task corrected.",
)


def key_windows_reconcile(batch: int | None = None) -> int:
    """Reconcile the next batch of windows after the cursor; returns how many it corrected."""
    size = batch or settings.KEY_WINDOWS_RECONCILE_BATCH
    after = int(cache.get(CURSOR, 0))
    with transaction.atomic():
        windows = list(
            KeySpendWindow.objects.select_for_update()
            .filter(key_id__gt=after)
            .order_by("key_id")
            .values_list("key_id", "window_start", "reserved")[:size]
        )
        corrected = _reconcile(windows)
    cache.set(CURSOR, windows[-1][0] if len(windows) == size else 0, timeout=None)
    return corrected


def _reconcile(windows: list[tuple[int, datetime | None, Decimal]]) -> int:
    """Set each locked window's ``reserved`` to its open holds; returns how many changed."""
    if not windows:
        return 0
    starts = {key_id: start for key_id, start, _ in windows}
    # A hold counts in its key's window and its ancestors' (older keys, lower ids): none of a
    # key below the batch's lowest id counts in it.
    holds = list(
        Reservation.objects.filter(state__in=_OPEN, key_id__gte=windows[0][0]).values_list(
            "key_id", "key_window_start", "ancestor_windows", "amount"
        )
    )
    never_reset = legacy_never_reset((k, s, w) for k, s, w, _ in holds)
    held: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for key_id, start, ancestor_windows, amount in holds:
        for window_key, window_start in hold_windows(key_id, start, ancestor_windows, never_reset):
            if window_key in starts and starts[window_key] == window_start:
                held[window_key] += amount
    corrected = 0
    for key_id, _, reserved in windows:  # already locked, in key id order
        if reserved == held[key_id]:
            continue
        KeySpendWindow.objects.filter(key_id=key_id).update(reserved=held[key_id])
        logger.warning(
            "key spend window of key %s reserved %s, its open holds %s: corrected",
            key_id,
            reserved,
            held[key_id],
        )
        WINDOWS_REPAIRED.inc()
        corrected += 1
    return corrected
