"""Daily usage rollups: written by settlement, read by the usage API, the dashboard and key spend.

Write side: ``usage_rollups_add`` runs inside settlement's transaction, right after the usage
records are inserted, and adds the batch to ``UsageRollup`` with one ``INSERT … ON CONFLICT DO
UPDATE`` row per (organization, UTC day, key, model, provider, router, status), and to
``UsageRollupAllKeys`` (the same without the key) and ``UsageRollupKeyDay`` (key and day only)
likewise; a read uses the smallest table that keeps what it groups by and filters on. Rows are upserted in
sorted order, so concurrent settlers lock them in the same order and cannot deadlock on them; the
organization's account row is still locked last (settlement's lock order). When settlement charges
less than a record's cost (``shortfall``) it lowers the record and calls ``usage_rollup_adjust``
for the same row, which this transaction already holds.

Read side: ``usage_totals`` answers "requests, tokens and cost per <dimensions>" over any time
range: whole UTC days inside the range from the rollups, the partial days at its edges from the
usage records (an index range scan over at most two days), merged in Python.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import Count, F, Model, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDate

from billing.models import UsageRecord, UsageRollup, UsageRollupAllKeys, UsageRollupKeyDay
from routerhub.money import ZERO, money

if TYPE_CHECKING:
    from billing.drafts import UsageDraft
    from billing.selectors import UsageFilter

_DIMENSIONS = ("organization_id", "day", "key_id", "model", "provider", "router", "status")
MEASURES = ("requests", "prompt_tokens", "completion_tokens", "cost", "cache_write_tokens")
RollupKey = tuple[int, date, int, str, str, str, str]  # values of ``_DIMENSIONS``
Totals = tuple[int, int, int, Decimal, int]  # values of ``MEASURES``


@dataclass(frozen=True)
class _Table:
    """A rollup table: the dimensions it keeps (a subset of ``_DIMENSIONS``) and its upsert."""

    model: type[Model]
    dimensions: tuple[str, ...]

    def upsert_sql(self, rows: int) -> str:
        """One ``INSERT … ON CONFLICT DO UPDATE`` of ``rows`` rows (distinct keys: a statement
        may not update one row twice), inserted and so locked in the order given."""
        table, columns = self.model._meta.db_table, self.dimensions + MEASURES
        row = f"({', '.join(['%s'] * len(columns))})"
        # Table and column names are constants of this module, never input.
        return (
            f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
            f"VALUES {', '.join([row] * rows)} "
            f"ON CONFLICT ({', '.join(self.dimensions)}) DO UPDATE SET "
            + ", ".join(f"{m} = {table}.{m} + EXCLUDED.{m}" for m in MEASURES)
        )

    def project(self, totals: Mapping[RollupKey, Totals]) -> dict[tuple[Any, ...], Totals]:
        kept = [_DIMENSIONS.index(d) for d in self.dimensions]
        out: dict[tuple[Any, ...], Totals] = {}
        for key, (requests, prompt, completion, cost, written) in totals.items():
            short = tuple(key[i] for i in kept)
            r, p, c, k, w = out.get(short, (0, 0, 0, ZERO, 0))
            out[short] = (r + requests, p + prompt, c + completion, k + cost, w + written)
        return out


PER_KEY = _Table(UsageRollup, _DIMENSIONS)
ALL_KEYS = _Table(UsageRollupAllKeys, tuple(d for d in _DIMENSIONS if d != "key_id"))
KEY_DAYS = _Table(UsageRollupKeyDay, ("organization_id", "day", "key_id"))
_SMALLEST_FIRST = (KEY_DAYS, ALL_KEYS, PER_KEY)


def _rollup_key(draft: UsageDraft) -> RollupKey:
    return (
        draft.organization_id,
        draft.created_at.astimezone(UTC).date(),
        draft.key_id or 0,
        draft.model,
        draft.provider,
        draft.router,
        draft.status,
    )


# Rows per upsert statement: far under SQLite's 32,766 parameters; a settler's batch (at most
# ``billing.outbox.BATCH_SIZE`` drafts, a few keys each at c=1) usually needs one per table.
_UPSERT_ROWS = 200


def _upsert(totals: Mapping[RollupKey, Totals]) -> None:
    """Add ``totals`` to the three tables, each in sorted key order (the lock order): one
    statement per table (measured: an ``executemany`` per table cost a batch ~0.5 ms of the
    settler's CPU in pipeline set-up alone)."""
    with connection.cursor() as cursor:
        for table in (PER_KEY, ALL_KEYS, KEY_DAYS):
            rows = table.project(totals)
            ordered = [key + rows[key] for key in sorted(rows)]
            for start in range(0, len(ordered), _UPSERT_ROWS):
                chunk = ordered[start : start + _UPSERT_ROWS]
                cursor.execute(table.upsert_sql(len(chunk)), [v for row in chunk for v in row])


def usage_rollups_add(drafts: Iterable[UsageDraft]) -> None:
    """Add freshly recorded requests to their daily rollups (inside settlement's transaction)."""
    totals: dict[RollupKey, Totals] = {}
    for draft in drafts:
        key = _rollup_key(draft)
        requests, prompt, completion, cost, written = totals.get(key, (0, 0, 0, ZERO, 0))
        totals[key] = (
            requests + 1,
            prompt + draft.prompt_tokens,
            completion + draft.completion_tokens,
            cost + money(draft.cost),
            written + draft.cache_write_tokens,
        )
    _upsert(totals)


def usage_rollup_adjust(draft: UsageDraft, cost_change: Decimal) -> None:
    """Move a recorded request's cost in its rollups (settlement charged less than its cost)."""
    _upsert({_rollup_key(draft): (0, 0, 0, cost_change, 0)})


# Read side ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Split:
    """A time range cut into whole UTC days (rollups) and the partial days at its edges (raw)."""

    first_day: date | None  # whole days from here (None: unbounded)
    end_day: date | None  # … up to here, exclusive (None: unbounded)
    raw: list[tuple[datetime | None, datetime | None]]  # [start, end) ranges read from records


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _split(start: datetime | None, end: datetime | None) -> _Split:
    first = end_day = None
    if start is not None:
        start = start.astimezone(UTC)
        first = start.date() if start == _midnight(start.date()) else start.date() + timedelta(1)
    if end is not None:
        end_day = end.astimezone(UTC).date()
    if first is not None and end_day is not None and first >= end_day:
        return _Split(first, first, [(start, end)])  # no whole day inside: all from the records
    raw: list[tuple[datetime | None, datetime | None]] = []
    if start is not None and first is not None and _midnight(first) > start:
        raw.append((start, _midnight(first)))
    if end is not None and end_day is not None and end > _midnight(end_day):
        raw.append((_midnight(end_day), end))
    return _Split(first, end_day, raw)


_RAW_GROUPS: dict[str, Any] = {
    "day": TruncDate("created_at"),
    "key": Coalesce(F("key_id"), Value(0)),
    "model": F("model"),
    "provider": F("provider"),
    "router": F("router"),
}


def _grouped(
    rows: QuerySet[Any], groups: dict[str, Any], dims: Sequence[str], measures: dict[str, Any]
) -> QuerySet[Any]:
    """``rows`` added up per combination of ``dims``; with none, one aggregate row (no GROUP
    BY), ``found`` 0 when no row matched (``_merge`` skips it, as there would be no group)."""
    if not dims:  # a constant in values() groups by nothing: the database adds up every row
        measures = measures | {"found": Count("pk")}
        total: QuerySet[Any] = rows.annotate(g_=Value(1)).values("g_").annotate(**measures)
        return total.order_by()
    names = {f"g_{dim}": groups[dim] for dim in dims}
    grouped: QuerySet[Any] = rows.annotate(**names).values(*names).annotate(**measures)
    return grouped.order_by()


_COLUMNS = {
    "day": "day",
    "key": "key_id",
    "model": "model",
    "provider": "provider",
    "router": "router",
}


_ROLLUP_GROUPS: dict[str, Any] = {dim: F(column) for dim, column in _COLUMNS.items()}


def _rollup_rows(
    filters: UsageFilter, organization_id: int | None, dims: Sequence[str]
) -> QuerySet[Any]:
    """From the smallest rollup table that keeps every dimension grouped by or filtered on."""
    needed = {_COLUMNS[dim] for dim in dims} | {"day"}
    needed |= {"key_id"} if filters.key_id is not None else set()
    needed |= {"model"} if filters.model else set()
    needed |= {"status"} if filters.status else set()
    table = next(t for t in _SMALLEST_FIRST if needed <= set(t.dimensions))
    rows = table.model._default_manager.all()
    if organization_id is not None:
        rows = rows.filter(organization_id=organization_id)
    if filters.model:
        rows = rows.filter(model=filters.model)
    if filters.key_id is not None:
        rows = rows.filter(key_id=filters.key_id)
    if filters.status:
        rows = rows.filter(status=filters.status)
    return rows


def _raw_rows(filters: UsageFilter, organization_id: int | None) -> QuerySet[UsageRecord]:
    from billing.selectors import usage_records

    if organization_id is not None:
        return usage_records(organization_id=organization_id, filters=filters)
    rows = UsageRecord.objects.filter(key_id=filters.key_id)  # a key's spend (key_usage)
    if filters.start is not None:
        rows = rows.filter(created_at__gte=filters.start)
    if filters.end is not None:
        rows = rows.filter(created_at__lt=filters.end)
    return rows


def usage_totals(
    *, organization_id: int | None, filters: UsageFilter, dims: Sequence[str]
) -> list[dict[str, Any]]:
    """Requests, prompt and completion tokens, cost and cache writes per combination of ``dims`` (any of day,
    key (its id, 0 for none), model, provider, router), in no particular order. Without an
    organization, ``filters.key_id`` is required (one key's spend)."""
    parts = usage_parts(organization_id=organization_id, filters=filters, dims=dims)
    return _merge(
        (({dim: row[f"g_{dim}"] for dim in dims} | row for row in part) for part in parts), dims
    )


def usage_parts(
    *, organization_id: int | None, filters: UsageFilter, dims: Sequence[str]
) -> list[QuerySet[Any]]:
    """The queries whose rows, added up per group, are ``usage_totals``: the whole days' rollups
    and the partial days' records, each grouped by ``dims`` (values ``g_<dim>`` and
    ``MEASURES``; one group may be in several of them)."""
    split = _split(filters.start, filters.end)
    parts: list[QuerySet[Any]] = []
    if split.first_day is None or split.end_day is None or split.first_day < split.end_day:
        rollups = _rollup_rows(filters, organization_id, dims)
        if split.first_day is not None:
            rollups = rollups.filter(day__gte=split.first_day)
        if split.end_day is not None:
            rollups = rollups.filter(day__lt=split.end_day)
        sums: dict[str, Any] = {m: Sum(m) for m in MEASURES}
        parts.append(_grouped(rollups, _ROLLUP_GROUPS, dims, sums))
    for start, end in split.raw:
        raw = _raw_rows(replace(filters, start=start, end=end), organization_id)
        counted: dict[str, Any] = {"requests": Count("id")} | {m: Sum(m) for m in MEASURES[1:]}
        parts.append(_grouped(raw, _RAW_GROUPS, dims, counted))
    return parts


def _merge(parts: Iterable[Iterable[dict[str, Any]]], dims: Sequence[str]) -> list[dict[str, Any]]:
    totals: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, 0, ZERO, 0])
    for part in parts:
        for row in part:
            if row.get("found", 1) == 0:  # no dimension and no row: no group
                continue
            total = totals[tuple(row[dim] for dim in dims)]
            for i, measure in enumerate(MEASURES):
                total[i] += row[measure] or 0
    return [
        dict(zip(dims, group, strict=True)) | dict(zip(MEASURES, values, strict=True))
        for group, values in totals.items()
    ]
