"""Settlement: usage records, charges and released holds for many requests in one transaction.

Per request, a charge is one append-only ledger entry ``usage:<generation id>`` and its usage
record; per organization in a batch, one ``UPDATE`` of the credit account. Settling in batches
keeps the organization's account row (the one every request of that organization touches) locked
once per batch instead of once per request, which is what let a single organization reach
hundreds of requests per second (measured: ~100 req/s when each request settled alone).

Locks are always taken in one order — the request's own reservation rows, then credit accounts
(by organization id), then hold rows (``CreditHold``), then key spend windows — here, in the
sweeper and in ``credits_reserve`` (hold row, then window, then it inserts its reservation;
tests/billing/test_lock_order.py). Reservations update the hold row and only read the account
row, so they never wait for this charge; the hold row is written here only for a charge beyond
its holds (``_beyond_holds``). The account row is locked last on PostgreSQL, by the one statement
that charges it, right before a commit that does not wait for the disk (durability is awaited
after the locks are gone, before the drafts are acknowledged).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection, models, transaction
from django.db.models import DecimalField, F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from billing.drafts import DECISION_COLUMNS, STEP_FIELDS, UsageDraft, decision_rows
from billing.key_windows import hold_windows, legacy_never_reset
from billing.models import (
    CreditAccount,
    CreditHold,
    KeySpendWindow,
    LedgerEntry,
    LedgerKind,
    Reservation,
    ReservationState,
    UsageDecision,
    UsageFlag,
    UsageGeneration,
    UsageRecord,
    UsageStep,
)
from billing.rollups import usage_rollups_add
from billing.settle_sql import generations_settled, holds_settle, rows_copy
from billing.shortfall import capped_costs_record
from billing.wal import wal_commit_without_waiting, wal_wait_durable
from routerhub.money import ZERO, money

logger = logging.getLogger(__name__)


# The INSERT column lists stay packed (fmt: skip): one name per line would add 31 lines and
# take this module past the 450-line limit.
_USAGE_COLUMNS = (
    "organization_id", "generation_id", "key_id", "model", "requested_model", "provider",
    "router", "router_id", "router_version", "prompt_tokens", "completion_tokens",
    "cached_tokens", "reasoning_tokens", "cache_write_tokens", "cost", "latency_ms", "ttft_ms", "status", "error_type",
    "streamed", "is_byok", "prompt", "response", "trace", "flags", "created_at",
)  # fmt: skip
_usage_values = attrgetter(*_USAGE_COLUMNS)
_COST = _USAGE_COLUMNS.index("cost")
# The text columns (the draft's ``str`` fields): where a NUL may hide.
_TEXT = tuple(i for i, c in enumerate(_USAGE_COLUMNS) if UsageDraft.__annotations__[c] == "str")
_STEP_COLUMNS = ("generation_id", *STEP_FIELDS)
_LEDGER_COLUMNS = (
    "organization_id", "kind", "amount", "balance_after", "idempotency_key", "description",
    "reference", "created_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Hold:
    pk: int
    organization_id: int
    generation_id: str
    key_id: int | None
    amount: Decimal
    key_window_start: datetime | None
    ancestor_windows: Any  # ``billing.key_windows.hold_windows``


_ZERO_MONEY = Value(ZERO, output_field=DecimalField())
_OPEN = (ReservationState.HELD, ReservationState.FREE)  # holds not yet settled or released


def _lock_holds(**filters: Any) -> list[_Hold]:
    """Lock the held reservations matching ``filters``, in primary-key order."""
    rows = (
        Reservation.objects.select_for_update()
        .filter(state__in=_OPEN, **filters)
        .order_by("pk")
        .values_list(*(f.name for f in fields(_Hold)))
    )
    return [_Hold(*row) for row in rows]


def usage_settled_before(generation_ids: Sequence[str]) -> set[str]:
    """Which of ``generation_ids`` were settled (their generation id claimed) and committed."""
    if connection.vendor == "postgresql":
        return generations_settled(generation_ids)
    return set(UsageGeneration.objects.filter(pk__in=generation_ids).values_list("pk", flat=True))


def _settle_holds(fresh: list[UsageDraft]) -> list[_Hold]:
    """Lock the drafts' open holds (in primary-key order) and mark each settled when its draft
    has something to charge, else released; returns them as they were."""
    generation_ids = [d.generation_id for d in fresh]
    paid = [d.generation_id for d in fresh if money(d.cost) > 0]
    if connection.vendor == "postgresql":
        return [_Hold(*row) for row in holds_settle(generation_ids, paid)]
    holds = _lock_holds(generation_id__in=generation_ids)
    for state, pks in (
        (ReservationState.SETTLED, [h.pk for h in holds if h.generation_id in set(paid)]),
        (ReservationState.RELEASED, [h.pk for h in holds if h.generation_id not in set(paid)]),
    ):
        if pks:
            Reservation.objects.filter(pk__in=pks).update(state=state)
    return holds


def _usage_row(draft: UsageDraft) -> tuple[Any, ...]:
    """The draft's values in ``_USAGE_COLUMNS`` order (the draft's fields carry those names).

    A NUL character (valid in a JSON request, so possible in a logged prompt) becomes U+FFFD:
    PostgreSQL text cannot hold it, and one unstorable draft would fail its whole batch."""
    row = list(_usage_values(draft))
    row[_COST] = money(draft.cost)
    for i in _TEXT:
        if "\x00" in row[i]:
            row[i] = row[i].replace("\x00", "\ufffd")
    return tuple(row)


def _step_rows(draft: UsageDraft) -> list[tuple[Any, ...]]:
    """A pipeline draft's child records (``UsageStep``), in ``_STEP_COLUMNS`` order."""
    return [
        (draft.generation_id, *(money(Decimal(s["cost"])) if c == "cost" else s[c]
                                for c in STEP_FIELDS))
        for s in draft.steps
    ]  # fmt: skip


def _insert(
    model: type[models.Model], columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """Insert many rows. On PostgreSQL one ``COPY`` (``billing.settle_sql``; measured, an
    ``INSERT`` per row cost PostgreSQL a parse, a plan and a partition lookup each, and
    ``bulk_create`` most of a batch preparing each field of each model instance). Elsewhere
    (SQLite) through the ORM."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(
            [model(**dict(zip(columns, row, strict=True))) for row in rows]
        )
        return
    rows_copy(model._meta.db_table, columns, rows)


def _lock_accounts(organization_ids: set[int]) -> dict[int, Decimal]:
    """Lock the organizations' credit accounts (by organization id); returns their balances."""
    accounts = (
        CreditAccount.objects.select_for_update()
        .filter(organization_id__in=organization_ids)
        .order_by("organization_id")
        .values_list("organization_id", "balance")
    )
    return dict(accounts)


def _release_windows(holds: Sequence[_Hold], spent: dict[str, Decimal]) -> None:
    """Release the holds from their keys' windows and count their charges there: the key's own
    and its ancestors' (``billing.key_windows``), updated in key id order."""
    windows: dict[tuple[int, Any], tuple[Decimal, Decimal]] = defaultdict(lambda: (ZERO, ZERO))
    never_reset = legacy_never_reset(
        (h.key_id, h.key_window_start, h.ancestor_windows) for h in holds
    )
    for hold in holds:
        recorded = (hold.key_id, hold.key_window_start, hold.ancestor_windows, never_reset)
        for window in hold_windows(*recorded):
            held, cost = windows[window]
            windows[window] = (held + hold.amount, cost + spent.get(hold.generation_id, ZERO))
    for (key_id, start), (held, cost) in sorted(windows.items(), key=lambda w: w[0][0]):
        # Only the window the hold was taken in: a window that rolled over was reset without it.
        # Never below zero: a hold from before windows were recorded may not have been in it,
        # and a window reset by an older pod may no longer count it.
        KeySpendWindow.objects.filter(key_id=key_id, window_start=start).update(
            reserved=Greatest(F("reserved") - held, _ZERO_MONEY), spent=F("spent") + cost
        )


def usage_settle_batch(drafts: Sequence[UsageDraft], *, wait_durable: bool = True) -> list[str]:
    """Settle drafts not settled before; returns the generation ids this call settled.

    With ``wait_durable=False`` the caller takes over waiting for durability (see
    ``billing.wal``) before it tells anyone the drafts are settled.

    A cost is the provider's usage at list price, which can exceed the request's hold (the
    gateway flags that ``over_hold``); it is charged in full while the balance covers it, and
    beyond that the charge is capped at the balance (never below zero), logged and flagged
    ``shortfall``, and the usage record shows the amount actually charged, so record, ledger
    and balance always agree.
    """
    unique = {d.generation_id: d for d in drafts}
    if not unique:
        return []
    # Only when this is the whole transaction; inside a caller's, its commit decides.
    asynchronous = connection.vendor == "postgresql" and not connection.in_atomic_block
    with transaction.atomic():
        if asynchronous:
            wal_commit_without_waiting()
        # Settled generation ids are claimed in UsageGeneration (one unpartitioned index) by
        # the record insert's trigger, which also stops a concurrent settler of the same id.
        done = usage_settled_before(list(unique))
        fresh = sorted((d for g, d in unique.items() if g not in done), key=lambda d: d.created_at)
        if fresh:
            _settle_fresh(fresh)
    # Also when every draft was settled before: that may be another settler's commit, which did
    # not wait for the disk, and the caller is about to tell (acknowledge) that it is settled.
    if asynchronous and wait_durable:
        wal_wait_durable()
    return [d.generation_id for d in fresh]


def _settle_fresh(fresh: list[UsageDraft]) -> None:
    """Settle drafts not settled before (in ``created_at`` order), in the caller's transaction."""
    holds = _settle_holds(fresh)
    # Everything that does not need the organization's account row happens before it is
    # locked: that row is what every new request of the organization must update to reserve.
    _insert(UsageRecord, _USAGE_COLUMNS, [_usage_row(d) for d in fresh])
    _insert(UsageStep, _STEP_COLUMNS, [row for d in fresh for row in _step_rows(d)])
    _insert(UsageDecision, DECISION_COLUMNS, decision_rows(fresh))
    usage_rollups_add(fresh)
    held_by_org: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for hold in holds:
        held_by_org[hold.organization_id] += hold.amount
    if connection.vendor == "postgresql":
        charged = _charge_locking_last(fresh, held_by_org)
    else:
        charged = _charge_locked(fresh, held_by_org)
    _release_windows(holds, charged)


def _charges(
    drafts: list[UsageDraft], balances: dict[int, Decimal]
) -> tuple[dict[str, Decimal], list[tuple[Any, ...]]]:
    """What each draft pays against ``balances`` (taken in order, never below zero) and the
    ledger rows for it; ``balances`` is left at the balances after the batch."""
    charged: dict[str, Decimal] = {}
    entries: list[tuple[Any, ...]] = []
    now = timezone.now()
    for draft in drafts:
        cost = money(draft.cost)
        available = balances.get(draft.organization_id, ZERO)
        cost = min(cost, max(available, ZERO))  # the shortfall is flagged by the caller
        if cost <= 0:
            continue
        balances[draft.organization_id] = available - cost
        charged[draft.generation_id] = cost
        description = f"{draft.model or draft.requested_model} via {draft.provider or '-'}"
        entries.append(
            (
                draft.organization_id,
                LedgerKind.USAGE.value,
                -cost,
                balances[draft.organization_id],
                f"usage:{draft.generation_id}",
                description[:300],
                draft.generation_id[:120],
                now,
            )
        )
    return charged, entries


def _charge_locked(fresh: list[UsageDraft], held_by_org: dict[int, Decimal]) -> dict[str, Decimal]:
    """Lock the accounts, then write the charges against the locked balances."""
    balances = _lock_accounts({d.organization_id for d in fresh})
    charged, entries = _charges(fresh, balances)
    _insert(LedgerEntry, _LEDGER_COLUMNS, entries)
    capped_costs_record(fresh, charged)
    spent_by_org: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for draft in fresh:
        spent_by_org[draft.organization_id] += charged.get(draft.generation_id, ZERO)
    for organization_id in sorted(spent_by_org):
        spent = spent_by_org[organization_id]
        held = held_by_org.get(organization_id, ZERO)
        beyond = _beyond_holds(spent, held)
        if spent or held:
            CreditAccount.objects.filter(organization_id=organization_id).update(
                balance=F("balance") - spent,
                released=F("released") + held + beyond,
                total_used=F("total_used") + spent,
            )
        _holds_raise(organization_id, beyond)
    return charged


def _beyond_holds(spent: Decimal, held: Decimal) -> Decimal:
    """What an organization's charges in a batch take beyond its released holds (``over_hold``
    costs, drafts whose hold is gone): added to both ``released`` and ``held``, so that
    ``balance + released`` never decreases (``billing.models.CreditHold``)."""
    return max(spent - held, ZERO)


def _holds_raise(organization_id: int, amount: Decimal) -> None:
    """The hold-row half of ``_beyond_holds`` (rare: the one time settlement writes that row,
    after the account row, in the lock order account, hold, window)."""
    if amount > 0:
        CreditHold.objects.filter(account_id=organization_id).update(held=F("held") + amount)


# Takes the account row's lock and updates it in one statement; returns the balance before.
# Reservations do not wait for this lock: they update the hold row (``CreditHold``).
_ACCOUNT_CHARGE_SQL = """
UPDATE billing_creditaccount AS account
SET balance = account.balance - LEAST(%(spent)s, account.balance),
    released = account.released + %(held)s + %(beyond)s,
    total_used = account.total_used + LEAST(%(spent)s, account.balance),
    updated_at = %(now)s
FROM (SELECT balance FROM billing_creditaccount WHERE organization_id = %(organization)s
      FOR UPDATE) AS before
WHERE account.organization_id = %(organization)s
RETURNING before.balance
"""


def _charge_locking_last(
    fresh: list[UsageDraft], held_by_org: dict[int, Decimal]
) -> dict[str, Decimal]:
    """PostgreSQL: write the ledger entries against a snapshot of the balances, then lock and
    update each account in one statement, right before the commit.

    The account row is what every new request of the organization updates to reserve, and it
    stays locked until commit: this keeps that to one statement and the commit (measured: the
    lock held across the ledger inserts stalled reservations by 4-8 ms every batch). If the
    balance moved between the snapshot and the lock (a top-up, another settler), this
    organization's entries are written again against the locked balance.
    """
    organizations = sorted({d.organization_id for d in fresh})
    snapshot = dict(
        CreditAccount.objects.filter(organization_id__in=organizations).values_list(
            "organization_id", "balance"
        )
    )
    charged, entries = _charges(fresh, dict(snapshot))
    _insert(LedgerEntry, _LEDGER_COLUMNS, entries)
    now = timezone.now()
    with connection.cursor() as cursor:
        for organization_id in organizations:
            drafts = [d for d in fresh if d.organization_id == organization_id]
            spent = sum((money(d.cost) for d in drafts), ZERO)
            held = held_by_org.get(organization_id, ZERO)
            params = {"spent": spent, "held": held, "beyond": _beyond_holds(spent, held)}
            cursor.execute(
                _ACCOUNT_CHARGE_SQL, {**params, "organization": organization_id, "now": now}
            )
            row = cursor.fetchone()
            _holds_raise(organization_id, params["beyond"])
            before = ZERO if row is None else row[0]
            if row is not None and before != snapshot.get(organization_id):
                charged.update(_recharge(drafts, before))
    capped_costs_record(fresh, charged)
    return charged


def _recharge(drafts: list[UsageDraft], balance: Decimal) -> dict[str, Decimal]:
    """Rewrite one organization's ledger entries of this batch against its locked balance."""
    keys = [f"usage:{d.generation_id}" for d in drafts]
    LedgerEntry.objects.filter(idempotency_key__in=keys).delete()
    charged, entries = _charges(drafts, {drafts[0].organization_id: balance})
    _insert(LedgerEntry, _LEDGER_COLUMNS, entries)
    return {d.generation_id: charged.get(d.generation_id, ZERO) for d in drafts}


def reservations_release(reservations: Sequence[Reservation]) -> int:
    """Release holds without charging (their requests had nothing to charge); returns how many."""
    if not reservations:
        return 0
    with transaction.atomic():
        holds = _lock_holds(pk__in=[r.pk for r in reservations])
        _lock_accounts({h.organization_id for h in holds})
        held_by_org: dict[int, Decimal] = defaultdict(lambda: ZERO)
        for hold in holds:
            held_by_org[hold.organization_id] += hold.amount
        for organization_id, held in sorted(held_by_org.items()):
            CreditAccount.objects.filter(organization_id=organization_id).update(
                released=F("released") + held
            )
        _release_windows(holds, {})
        Reservation.objects.filter(pk__in=[h.pk for h in holds]).update(
            state=ReservationState.RELEASED
        )
    return len(holds)


def reservations_reconcile(reservations: Sequence[Reservation]) -> list[str]:
    """Charge holds whose usage never arrived at their held amount; returns their generation ids.

    Each is settled like a draft (``usage_settle_batch``: a usage record flagged
    ``reconciled_from_hold``, the ledger entry ``usage:<generation id>`` capped at the balance,
    the hold settled) and so once per generation id: a draft that arrives afterwards finds the
    record and charges nothing more. The hold is the request's worst case (bar a provider
    counting past it); the tenant sees which records were charged this way.
    """
    drafts = [
        UsageDraft(
            generation_id=r.generation_id,
            organization_id=r.organization_id,
            key_id=r.key_id,
            status="succeeded",
            cost=r.amount,
            created_at=r.created_at,
            flags=UsageFlag.RECONCILED_FROM_HOLD.value,
        )
        for r in reservations
    ]
    return usage_settle_batch(drafts)


def usage_settle(draft: UsageDraft) -> UsageRecord:
    """Settle one request (idempotent) and return its usage record."""
    usage_settle_batch([draft])
    return UsageRecord.objects.get(generation_id=draft.generation_id)


async def usage_settle_async(draft: UsageDraft) -> None:
    await sync_to_async(usage_settle_batch, thread_sensitive=False)([draft])
