"""Monthly partitions of usage records and ledger entries (PostgreSQL only).

``billing_usagerecord`` and ``billing_ledgerentry`` are partitioned by range of ``created_at``:
one partition per UTC month, ``<table>_pYYYY_MM``, and ``<table>_default`` for rows no month
takes (a clock far off, a missed task): an insert is never refused for want of a partition.

- ``partitions_ensure`` (the daily ``billing.partitions_ensure`` task; migration 0011 made the first)
  creates the partitions of the current month and ``MONTHS_AHEAD`` months ahead. A month whose
  rows already landed in the default partition is created with them moved in, up to
  ``DEFAULT_MOVE_LIMIT`` rows (one short transaction); more is logged for an operator.
- ``usage_partitions_drop`` (the daily task too) drops whole months of usage records older than
  ``USAGE_RECORD_RETENTION_MONTHS`` (off by default): the daily rollups keep their totals, so the
  usage API stays exact over any range; raw rows (drill-down, CSV export, generation lookup)
  cover the months kept. The ledger is the books: never dropped.

Uniqueness of generation ids and ledger keys lives outside these tables
(``billing.partition_schema``).
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, date, datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

PARTITIONED = ("billing_usagerecord", "billing_ledgerentry")
USAGE_TABLE = "billing_usagerecord"
MONTHS_AHEAD = 3
DEFAULT_SUFFIX = "_default"
DEFAULT_MOVE_LIMIT = 100_000
FORGET_BATCH = 5000
_MONTHLY = re.compile(r"_p(\d{4})_(\d{2})$")


class PartitionError(RuntimeError):
    """A month's partition cannot be created without an operator."""


def month_floor(moment: datetime) -> date:
    """The first day of ``moment``'s UTC month."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    return date(moment.year, moment.month, 1)


def month_add(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month:%Y_%m}"


def _bound(month: date) -> str:
    return f"'{month.isoformat()} 00:00:00+00'"  # a date: never input


def partition_ddl(table: str, month: date) -> str:
    """The ``CREATE TABLE`` of ``table``'s partition for ``month``."""
    return (
        f"CREATE TABLE {partition_name(table, month)} PARTITION OF {table} "
        f"FOR VALUES FROM ({_bound(month)}) TO ({_bound(month_add(month, 1))})"
    )


def _exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return bool(cursor.fetchone()[0])


def partition_create(table: str, month: date) -> bool:
    """Create ``table``'s partition for ``month`` unless it exists; returns whether it did.

    Rows of that month already in the default partition would make the ``CREATE`` fail, so they
    are taken out first and put back through the parent (into the new partition), all in one
    transaction; their generation ids and ledger keys are already claimed, so the uniqueness
    triggers stand aside for the move (``routerhub.partition_move``)."""
    if _exists(partition_name(table, month)):
        return False
    default, lower, upper = f"{table}{DEFAULT_SUFFIX}", _bound(month), _bound(month_add(month, 1))
    in_range = f"created_at >= {lower} AND created_at < {upper}"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        if _exists(partition_name(table, month)):  # created while this waited for the lock
            return False
        cursor.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {default} WHERE {in_range} LIMIT %s) AS s",  # noqa: S608
            [DEFAULT_MOVE_LIMIT + 1],
        )
        stray = int(cursor.fetchone()[0])
        if stray > DEFAULT_MOVE_LIMIT:
            raise PartitionError(
                f"{default} holds more than {DEFAULT_MOVE_LIMIT} rows of {month:%Y-%m}: create "
                f"{partition_name(table, month)} in a maintenance window"
            )
        if stray:
            cursor.execute("SET LOCAL routerhub.partition_move = 'on'")
            cursor.execute(f"CREATE TEMP TABLE partition_moving (LIKE {table}) ON COMMIT DROP")
            cursor.execute(
                f"WITH moved AS (DELETE FROM {default} WHERE {in_range} RETURNING *) "  # noqa: S608
                "INSERT INTO partition_moving SELECT * FROM moved"
            )
        cursor.execute(partition_ddl(table, month))
        if stray:
            cursor.execute(f"INSERT INTO {table} SELECT * FROM partition_moving")  # noqa: S608
            # Off again now, not at the end of the transaction (a caller's may go on).
            cursor.execute("SET LOCAL routerhub.partition_move = 'off'")
            logger.warning("moved %d rows of %s from %s into its partition", stray, month, default)
    return True


def partitions_ensure(now: datetime | None = None) -> list[str]:
    """Create the missing partitions of this month and ``MONTHS_AHEAD`` months ahead; returns
    their names. Logs an error when a default partition holds rows (they belong to a month)."""
    if connection.vendor != "postgresql":
        return []
    first = month_floor(now or timezone.now())
    created = []
    for table in PARTITIONED:
        for ahead in range(MONTHS_AHEAD + 1):
            month = month_add(first, ahead)
            try:
                if partition_create(table, month):
                    created.append(partition_name(table, month))
            except PartitionError as exc:
                logger.error("%s", exc)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table}{DEFAULT_SUFFIX})")  # noqa: S608
            if cursor.fetchone()[0]:
                logger.error("%s%s holds rows outside every month", table, DEFAULT_SUFFIX)
            # Autovacuum never analyzes a partitioned parent (only its partitions): plans that
            # span months need the parent's statistics (a sample: seconds at millions of rows).
            cursor.execute(f"ANALYZE {table}")
    return created


def monthly_partitions(table: str) -> list[tuple[date, str]]:
    """``table``'s monthly partitions, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [table],
        )
        names = [row[0] for row in cursor.fetchall()]
    months = []
    for name in names:
        match = _MONTHLY.search(name)
        if match:
            months.append((date(int(match[1]), int(match[2]), 1), name))
    return sorted(months)


def usage_retention_cutoff(now: datetime | None = None) -> date | None:
    """The first month kept when ``USAGE_RECORD_RETENTION_MONTHS`` is set: the current month and
    that many whole months before it are kept."""
    months = settings.USAGE_RECORD_RETENTION_MONTHS
    if not months:
        return None
    return month_add(month_floor(now or timezone.now()), -int(months))


def usage_partitions_drop(now: datetime | None = None, *, budget_s: float = 60.0) -> list[str]:
    """Drop the usage record partitions of months before the retention cutoff (each detached
    and dropped in its own short transaction), then forget their generations; returns the
    dropped partitions' names. Nothing when retention is off."""
    cutoff = usage_retention_cutoff(now)
    if cutoff is None or connection.vendor != "postgresql":
        return []
    dropped = []
    for month, name in monthly_partitions(USAGE_TABLE):
        if month >= cutoff:
            break
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {USAGE_TABLE} DETACH PARTITION {name}")
            cursor.execute(f"DROP TABLE {name}")
        dropped.append(name)
        logger.warning("dropped usage records of %s (%s)", f"{month:%Y-%m}", name)
    generations_forget(datetime.combine(cutoff, datetime.min.time(), UTC), budget_s=budget_s)
    return dropped


def generations_forget(before: datetime, *, budget_s: float = 60.0) -> int:
    """Delete the settled-generation rows (with their steps and feedback) of records created
    before ``before``, in short batches until none is left or ``budget_s`` is spent."""
    from billing.models import UsageGeneration, UsageStep  # here: bench.scale_data imports
    # this module's month helpers before Django is set up

    deadline = time.monotonic() + budget_s
    forgotten = 0
    while time.monotonic() < deadline:
        batch = list(
            UsageGeneration.objects.filter(created_at__lt=before).values_list("pk", flat=True)[
                :FORGET_BATCH
            ]
        )
        if not batch:
            break
        with transaction.atomic():
            UsageStep.objects.filter(generation_id__in=batch).delete()
            UsageGeneration.objects.filter(pk__in=batch).delete()
        forgotten += len(batch)
    return forgotten
