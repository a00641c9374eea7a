"""The schema of the partitioned usage and ledger tables: the uniqueness triggers and the one-time
conversion of a plain table into a partitioned one (``billing`` migration 0011).

Uniqueness: PostgreSQL refuses a unique constraint on a partitioned table unless it includes the
partition key, and ``generation_id`` unique per ``(generation_id, created_at)`` would let a draft
the sweep reconciled (carrying the hold's ``created_at``) be recorded again with the draft's own.
So a trigger on each table inserts the key into an unpartitioned table whose primary key it is
(``billing_usagegeneration``, ``billing_ledgeridempotency``) in the same statement: a second
insert of the key, in any month and by any path (settlement's ``executemany``, the ORM, ``COPY``),
fails with the same ``IntegrityError`` the unique constraint raised, waiting as it did for a
concurrent transaction that inserted the key first. Deleting a ledger entry releases its key
(settlement rewrites entries written against a stale balance); a usage record's generation id
stays claimed. The triggers stand aside only while ``routerhub.partition_move`` is ``on``
(``billing.partitions`` moving rows out of the default partition, which are already claimed).

SQLite (the embedded mode) keeps plain tables with the same triggers.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from billing.partitions import DEFAULT_SUFFIX, MONTHS_AHEAD, month_add, month_floor, partition_ddl

# Claims for the rows already there (a migration's); "WHERE true": SQLite needs it before ON
# CONFLICT in INSERT … SELECT.
GUARD_BACKFILL = (
    "INSERT INTO billing_usagegeneration (generation_id, organization_id, created_at) "
    "SELECT generation_id, organization_id, created_at FROM billing_usagerecord WHERE true "
    "ON CONFLICT DO NOTHING",
    "INSERT INTO billing_ledgeridempotency (idempotency_key, created_at) "
    "SELECT idempotency_key, created_at FROM billing_ledgerentry WHERE true ON CONFLICT DO NOTHING",
)
_PG_FUNCTIONS = """
CREATE OR REPLACE FUNCTION billing_usage_generation_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('routerhub.partition_move', true) IS DISTINCT FROM 'on' THEN
        INSERT INTO billing_usagegeneration (generation_id, organization_id, created_at)
        VALUES (NEW.generation_id, NEW.organization_id, NEW.created_at);
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION billing_ledger_key_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('routerhub.partition_move', true) IS DISTINCT FROM 'on' THEN
        INSERT INTO billing_ledgeridempotency (idempotency_key, created_at)
        VALUES (NEW.idempotency_key, NEW.created_at);
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION billing_ledger_key_release() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('routerhub.partition_move', true) IS DISTINCT FROM 'on' THEN
        DELETE FROM billing_ledgeridempotency WHERE idempotency_key = OLD.idempotency_key;
    END IF;
    RETURN OLD;
END $$;
"""
_PG_TRIGGERS = {
    "billing_usagerecord": (
        "CREATE TRIGGER usage_generation_claim BEFORE INSERT ON billing_usagerecord "
        "FOR EACH ROW EXECUTE FUNCTION billing_usage_generation_claim()",
    ),
    "billing_ledgerentry": (
        "CREATE TRIGGER ledger_key_claim BEFORE INSERT ON billing_ledgerentry "
        "FOR EACH ROW EXECUTE FUNCTION billing_ledger_key_claim()",
        "CREATE TRIGGER ledger_key_release AFTER DELETE ON billing_ledgerentry "
        "FOR EACH ROW EXECUTE FUNCTION billing_ledger_key_release()",
    ),
}
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS usage_generation_claim BEFORE INSERT ON billing_usagerecord "
    "BEGIN INSERT INTO billing_usagegeneration (generation_id, organization_id, created_at) "
    "VALUES (NEW.generation_id, NEW.organization_id, NEW.created_at); END",
    "CREATE TRIGGER IF NOT EXISTS ledger_key_claim BEFORE INSERT ON billing_ledgerentry "
    "BEGIN INSERT INTO billing_ledgeridempotency (idempotency_key, created_at) "
    "VALUES (NEW.idempotency_key, NEW.created_at); END",
    "CREATE TRIGGER IF NOT EXISTS ledger_key_release AFTER DELETE ON billing_ledgerentry "
    "BEGIN DELETE FROM billing_ledgeridempotency WHERE idempotency_key = OLD.idempotency_key; END",
)


def guard_triggers_install(cursor: Any, vendor: str) -> None:
    """Create the uniqueness triggers (PostgreSQL: on the partitioned parents, which clone them
    onto every partition, present and future)."""
    if vendor != "postgresql":
        for statement in _SQLITE_TRIGGERS:
            cursor.execute(statement)
        return
    cursor.execute(_PG_FUNCTIONS)
    for statements in _PG_TRIGGERS.values():
        for statement in statements:
            cursor.execute(statement)


_GUARDED_TABLES = {
    "billing_usagerecord",
    "billing_usagegeneration",
    "billing_ledgerentry",
    "billing_ledgeridempotency",
}


def sqlite_guards_restore(*, using: str = "default", **_: Any) -> None:
    """After every ``migrate`` on SQLite (``post_migrate``): the uniqueness triggers again, and
    the claims of rows written while one was missing. SQLite cannot alter a column in place, so
    Django rebuilds a table for a later migration's change (a copy, the old table dropped), and
    the old table's triggers go with it: on a fresh ``make run`` database, migrated in one go,
    ``billing_usagerecord``'s claim trigger was gone, so usage was recorded without its
    ``billing_usagegeneration`` row and feedback on every request was a 503 "not settled yet"
    for good. Both steps are idempotent; PostgreSQL
    keeps its triggers through ``ALTER TABLE`` and is left alone."""
    from django.db import connections

    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        # A partial migrate (``migrate contenttypes``, ``migrate billing 0009``) on a fresh
        # database: the tables (billing 0010/0011) are not there yet, and 0011 installs them.
        if not _GUARDED_TABLES.issubset(connection.introspection.table_names(cursor)):
            return
        guard_triggers_install(cursor, connection.vendor)
        for statement in GUARD_BACKFILL:
            cursor.execute(statement)


def _one(cursor: Any, sql: str, params: list[Any] | None = None) -> Any:
    cursor.execute(sql, params or [])
    return cursor.fetchone()[0]


def _definitions(cursor: Any, table: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The table's secondary index definitions and its foreign keys (name, definition)."""
    cursor.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = %s AND indexname <> %s ORDER BY indexname",
        [table, f"{table}_pkey"],
    )
    indexes = [row[0] for row in cursor.fetchall()]
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
        [table],
    )
    return indexes, [(name, definition) for name, definition in cursor.fetchall()]


def _sequence_take_over(cursor: Any, table: str, old: str) -> None:
    """Move ``id``'s numbering from the old table's identity (or serial) to a sequence of the
    new table's name, continuing where the old one stopped."""
    sequence = _one(cursor, "SELECT pg_get_serial_sequence(%s, 'id')", [old])
    last = _one(cursor, f"SELECT last_value FROM {sequence}")  # noqa: S608  (catalog name)
    top = max(int(last), int(_one(cursor, f"SELECT coalesce(max(id), 0) FROM {old}")))  # noqa: S608
    if _one(cursor, "SELECT attidentity <> '' FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attname = 'id'", [old]):  # fmt: skip
        cursor.execute(f"ALTER TABLE {old} ALTER COLUMN id DROP IDENTITY")
    else:
        cursor.execute(f"ALTER TABLE {old} ALTER COLUMN id DROP DEFAULT")
        cursor.execute(f"DROP SEQUENCE {sequence}")
    cursor.execute(f"CREATE SEQUENCE {table}_id_seq START WITH {top + 1}")
    cursor.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT nextval('{table}_id_seq')")
    cursor.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id")


def _months(cursor: Any, old: str, now: datetime) -> list[date]:
    oldest = _one(cursor, f"SELECT min(created_at) FROM {old}")  # noqa: S608
    first = month_floor(oldest if oldest is not None else now)
    last = month_add(month_floor(now), MONTHS_AHEAD)
    months = [first]
    while months[-1] < last:
        months.append(month_add(months[-1], 1))
    return months


def table_partition(cursor: Any, table: str, now: datetime | None = None) -> None:
    """Turn ``table`` into one partitioned by month of ``created_at``: a partition per month from
    its oldest row to ``MONTHS_AHEAD`` months ahead and a default one; its rows copied; the same
    indexes, checks, foreign keys and column defaults; primary key ``(id, created_at)``.

    Writers wait on the table's lock for the whole copy (measured in README: seconds per million
    rows); readers too, as the old table is dropped in the same transaction."""
    now = now or datetime.now(UTC)
    old = f"{table}_unpartitioned"
    cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    indexes, foreign_keys = _definitions(cursor, table)
    cursor.execute(f"ALTER TABLE {table} RENAME TO {old}")
    cursor.execute(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        "INCLUDING STORAGE) PARTITION BY RANGE (created_at)"
    )
    _sequence_take_over(cursor, table, old)
    cursor.execute(f"CREATE TABLE {table}{DEFAULT_SUFFIX} PARTITION OF {table} DEFAULT")
    for month in _months(cursor, old, now):
        cursor.execute(partition_ddl(table, month))
    cursor.execute(f"INSERT INTO {table} SELECT * FROM {old}")  # noqa: S608
    cursor.execute(f"DROP TABLE {old}")
    cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (id, created_at)")
    for definition in indexes:  # captured before the rename: they name the new table
        cursor.execute(definition)
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
    # Autovacuum analyzes the partitions in time, never a partitioned parent: its statistics
    # (what plans over several months use) are taken here, and by the daily task.
    cursor.execute(f"ANALYZE {table}")
