"""Reads for billing: balances, key spend, usage totals (groups: ``billing.usage_groups``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import F, OuterRef, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.utils import timezone

from accounts.key_chain import chain_up_sql
from accounts.key_lineage import key_answers_for
from accounts.keys import key_label
from accounts.models import ApiKey
from billing.models import KeySpendWindow, Reservation, ReservationState, UsageRecord
from billing.rollups import usage_totals
from billing.windows import (
    WindowLeft,
    window_end,
    window_left,
    window_start,
    window_tightest,
)
from routerhub.domain import NotFound, Unavailable
from routerhub.money import ZERO, money


@dataclass(frozen=True)
class KeyUsage:
    usage: Decimal
    usage_daily: Decimal
    usage_weekly: Decimal
    usage_monthly: Decimal
    limit_remaining: Decimal | None
    limit_reset_at: datetime | None


def _spent_since(key_id: int, since: datetime | None) -> Decimal:
    """The key's spend since ``since`` (window starts are midnights: rollups only)."""
    rows = usage_totals(
        organization_id=None, filters=UsageFilter(start=since, key_id=key_id), dims=()
    )
    return money(rows[0]["cost"]) if rows else ZERO


def key_usage(*, key: ApiKey) -> KeyUsage:
    """Spend of a key overall and per window, and what its limits leave (reservations count)."""
    now = timezone.now()
    tightest = key_limit_remaining(key=key, now=now)
    return KeyUsage(
        usage=_spent_since(key.pk, None),
        usage_daily=_spent_since(key.pk, window_start("daily", now)),
        usage_weekly=_spent_since(key.pk, window_start("weekly", now)),
        usage_monthly=_spent_since(key.pk, window_start("monthly", now)),
        # Both from the tightest window, the key's own or an ancestor's: a lifetime child under
        # a daily parent has 0.1 left until the parent's day ends, not for ever.
        limit_remaining=tightest.remaining if tightest else None,
        limit_reset_at=window_end(tightest.reset, now) if tightest else None,
    )


# The key and its ancestors (``created_by_key``, transitively), as a subquery.
_CHAIN_SQL = chain_up_sql("%s") + " SELECT id FROM up"  # noqa: S608 -- constants


def key_limit_remaining(*, key: ApiKey, now: datetime) -> WindowLeft | None:
    """What the key may still hold: the least any of its limit windows leaves, its own and its
    ancestors' (``key_limit_windows``; ``billing.windows.window_tightest`` breaks ties), with that
    window's period and key; None when none of them has a limit."""
    return window_tightest(key_limit_windows(key=key, now=now), now)


def key_limit_windows(*, key: ApiKey, now: datetime) -> list[WindowLeft]:
    """What each limit window the key's holds count in leaves, its own and its ancestors', each
    with its period and key (its id and label: a refusal names an ancestor as a hold's does), in
    key id order: the order a hold checks them, so the first that cannot cover an amount is the
    one that refuses it (``billing.key_windows.key_windows_reserve``). One query: the chain with
    each limited key's window row."""
    if key.limit is None and key.created_by_key_id is None:
        return []
    chain = RawSQL(_CHAIN_SQL, [key.pk])  # noqa: S611 -- a constant; the id is a parameter
    keys = ApiKey.objects.filter(pk__in=chain)
    if key.created_by_key_id is None:  # a key a person made: its own row, no walk
        keys = ApiKey.objects.filter(pk=key.pk)
    window = KeySpendWindow.objects.filter(key_id=OuterRef("pk"))
    # The limits as the rows have them now: a PATCH may have removed one since ``key`` was read.
    rows = (
        keys.filter(limit__isnull=False)
        .annotate(
            w_start=Subquery(window.values("window_start")),
            w_used=Subquery(window.values(used=F("spent") + F("reserved"))),
        )
        .order_by("pk")
        .values_list("pk", "prefix", "name", "limit", "limit_reset", "w_start", "w_used")
    )
    # A key whose limit stopped resetting carries its row's window on, as the holds count it.
    return [
        replace(
            window_left(limit, reset, None if used is None else (start, used), now),
            key_id=pk,
            label=key_label(prefix, name),
        )
        for pk, prefix, name, limit, reset, start, used in rows
        if limit is not None  # filtered out above; for the type
    ]


GROUPINGS = {"day", "model", "key", "router", "provider"}
DELETED_KEY = "(deleted key)"


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


def usage_summary(*, organization_id: int, filters: UsageFilter) -> dict[str, Any]:
    """Requests and cost in the range (the overview's month)."""
    rows = usage_totals(organization_id=organization_id, filters=filters, dims=())
    return rows[0] if rows else {"requests": 0, "cost": ZERO}


def generation_pending(
    *, organization_id: int, generation_id: str, served_by: int | None = None
) -> bool:
    """Whether ``generation_id`` has a live hold whose usage record is still to come (the API's
    503 and the dashboard's "pending" page agree on this one test); with ``served_by`` (an
    inference key's id), only a hold that key or a key it made holds counts."""
    holds = Reservation.objects.filter(
        organization_id=organization_id,
        generation_id=generation_id,
        state__in=(ReservationState.HELD, ReservationState.FREE),
        expires_at__gt=timezone.now(),
    )
    if served_by is None:
        return holds.exists()
    return _sent_by(served_by, holds.values_list("key_id", flat=True))


def generation_missing(
    *,
    organization_id: int,
    generation_id: str,
    param: str,
    served_by: int | None = None,
    action: str = "read",
) -> Exception:
    """Why an organization's ``generation_id`` has no usage record: a request answered but not
    yet settled (its hold is ``held``, or ``free`` for a zero-cost answer whose draft is queued,
    and not expired; settlement follows the answer, normally within a second) is a retryable 503
    with ``Retry-After``; anything else (no hold, or an expired one: its draft lost, the sweep
    runs every 15 minutes) is a 404, not worth a client's retrying. ``served_by`` (an inference
    key's ``TenantAPIView.served_by``) counts only those keys' requests: another key's is a 404,
    never a 503 that would confirm the id, and its message names the rule (``action`` the
    caller's verb) without saying whether the id exists."""
    pending = generation_pending(
        organization_id=organization_id, generation_id=generation_id, served_by=served_by
    )
    # The settler commits the record and settles the hold at once: a caller whose record lookup
    # ran just before that commit finds the hold settled here, and the record is there now.
    records = UsageRecord.objects.filter(
        organization_id=organization_id, generation_id=generation_id
    )
    if served_by is None:
        recorded = records.exists()
    else:
        recorded = _sent_by(served_by, records.values_list("key_id", flat=True))
    if pending or recorded:
        return Unavailable(
            f"Generation {generation_id} is not settled yet: retry in a moment.",
            param=param,
            headers={"Retry-After": "1"},
        )
    if served_by is not None:
        return NotFound(
            f"No generation {generation_id} sent by this key or keys it made; {action} it with "
            "the key that sent it or a management key.",
            param=param,
        )
    return NotFound(f"No generation {generation_id} in this organization.", param=param)


def _sent_by(key_id: int, senders: Any) -> bool:
    """Whether one of ``senders`` (the keys of one generation's rows: a few) is ``key_id`` or a
    key it made."""
    return any(key_answers_for(key_id, sender) for sender in set(senders[:16]))
