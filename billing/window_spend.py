"""What each key's limit window has used, as its holds see it, for budget-aware routing; and the
``budget.threshold`` event, once per window.

Every hold of a key with a spend limit locks the key's window row (``billing.services``) and so
reads its spend and holds at no extra cost. This module keeps the last such reading per key in
process memory (``window_spend_note``); the gateway reads it when it routes the key's next request
(``window_spend``), without a round trip to PostgreSQL or Redis. A worker's reading is as fresh as
its own last hold of the key: it misses what other workers held since, so the routing curve
reacts one request late per worker, and a worker that has not yet held for the key sees an empty
window. The limit itself is never at risk: every hold is still checked under the window's lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.windows import window_rolled, window_start
from routerhub.money import ZERO, money_str
from webhooks.models import WebhookEvent
from webhooks.services import webhook_event_emit

logger = logging.getLogger(__name__)

_MAX_KEYS = 100_000  # readings kept per process; the oldest half goes when it is reached


@dataclass(frozen=True, slots=True)
class WindowSpend:
    """A key's limit window as this process last saw it: spent plus held, of ``limit``."""

    reset: str | None  # daily, weekly, monthly; None: a limit that never resets
    start: datetime | None
    used: Decimal
    limit: Decimal
    # An ancestor's window (``billing.key_windows``), not the key's own: routing says so
    # without telling that key's limit and spend (README, hierarchical budget).
    ancestor: bool = False

    @property
    def share(self) -> float:
        """``used / limit``, from 0 to 1 (a limit of 0 is full)."""
        if self.limit <= 0:
            return 1.0
        return min(1.0, max(0.0, float(self.used / self.limit)))


_readings: dict[int, tuple[datetime | None, Decimal]] = {}


def window_spend_note(key_id: int, start: datetime | None, used: Decimal) -> None:
    """Remember what a hold of ``key_id`` found its window had used (holds included)."""
    if len(_readings) >= _MAX_KEYS and key_id not in _readings:
        for stale in list(_readings)[: _MAX_KEYS // 2]:
            del _readings[stale]
    _readings[key_id] = (start, used)


def window_spend(
    key_id: int,
    limit: Decimal,
    reset: str | None,
    now: datetime | None = None,
    *,
    ancestor: bool = False,
) -> WindowSpend:
    """The key's current window as this process's last hold saw it (empty when none was seen
    in this window). Memory only: no I/O."""
    start = window_start(reset, now or timezone.now())
    seen = _readings.get(key_id)
    # The hold's rule (``window_rolled``): a key whose limit stopped resetting carries on the
    # window its row was in; a reading from an earlier period's window is empty now.
    used = seen[1] if seen is not None and not window_rolled(start, seen[0]) else ZERO
    return WindowSpend(reset=reset, start=start, used=used, limit=limit, ancestor=ancestor)


def window_spend_clear() -> None:
    _readings.clear()


def threshold_crossed(used: Decimal, limit: Decimal) -> bool:
    """Whether ``used`` reached ``BUDGET_THRESHOLD_SHARE`` of ``limit``."""
    return used >= limit * Decimal(str(settings.BUDGET_THRESHOLD_SHARE))


def budget_threshold_emit(
    *, organization_id: int, key_id: int, spend: WindowSpend
) -> dict[str, Any]:
    """The ``budget.threshold`` event of one key's window: called once per window, inside the
    transaction that holds the request which crossed the share (it commits the window's mark that
    the event was sent). The event is emitted when that transaction commits, never inside it: its
    query and insert would hold the window's lock longer (every hold of the key waits on it) and a
    failure there would roll the hold back; a hold that rolls back emits nothing. Returns the
    event's payload."""
    payload: dict[str, Any] = {
        "key_id": key_id,
        "window": spend.reset,
        "window_start": spend.start.isoformat() if spend.start else None,
        "spent": money_str(spend.used),
        "limit": money_str(spend.limit),
        "share": round(spend.share, 4),
        "threshold": settings.BUDGET_THRESHOLD_SHARE,
    }
    transaction.on_commit(partial(_emit_committed, organization_id, payload))
    return payload


def _emit_committed(organization_id: int, payload: dict[str, Any]) -> None:
    # The hold has committed with the window's mark: a failure here loses this window's event
    # (logged), never the hold, which the request is already using.
    try:
        webhook_budget_threshold(organization_id=organization_id, payload=payload)
    except Exception:
        logger.exception(
            "budget.threshold event of key %s could not be queued; its hold stands",
            payload["key_id"],
        )


def webhook_budget_threshold(*, organization_id: int, payload: dict[str, Any]) -> None:
    """The one call site of the ``budget.threshold`` webhook: after the hold's commit (one query
    and one insert, once per window), sent by Celery."""
    logger.info(
        "budget.threshold: key %s used %s of its %s window",
        payload["key_id"],
        payload["share"],
        payload["window"],
    )
    webhook_event_emit(organization_id, WebhookEvent.BUDGET_THRESHOLD, payload)
