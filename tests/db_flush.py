"""The teardown of a transactional test, cheap: empty only the tables that have rows.

Django ends each ``TransactionTestCase`` (pytest-django's ``transactional_db`` and
``live_server``) with ``flush``: one ``TRUNCATE`` of every table (49 of them, with partitions,
TOAST tables and indexes about 130 relations, each given a new file), then the
``post_migrate`` signal, which recreates the content types and permissions the truncate
removed. That costs 0.4-1 s per test, and most tests leave rows in a handful of tables.

``flush_touched`` keeps the guarantee (each test starts with every table empty but the
content types and permissions ``post_migrate`` creates) and does less:

* ``LOCK TABLE ... IN SHARE MODE`` on every table first: it waits, as ``TRUNCATE``'s lock
  does, for a transaction a server thread still has open, so its rows are seen and deleted.
* One query finds the tables with rows (at most ``DELETE_LIMIT`` + 1 counted per table);
  they are emptied with ``DELETE`` in one transaction. The foreign keys Django makes are
  deferred to the commit, so the order does not matter; deleting through a partitioned parent
  empties its partitions, and the ledger's release trigger frees the idempotency keys
  (``billing_ledgeridempotency`` is emptied too). Sequences are left alone, as ``flush``
  leaves them (``reset_sequences=False``).
* A table with more than ``DELETE_LIMIT`` rows: the usual ``flush`` instead.
* Content types and permissions: kept when they are exactly what the last ``post_migrate``
  made (an md5 of their rows); else deleted and made again by ``post_migrate``, as before.
  Only when Django's own two receivers are the signal's only ones.

Tests that set ``available_apps`` or ``serialized_rollback`` (none today) keep Django's flush.
``tests/test_transactional_flush.py`` proves the guarantee.
"""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.db import connections, transaction
from django.test import TransactionTestCase

DELETE_LIMIT = 1000
SEED_TABLES = ("django_content_type", "auth_permission")
_seeded: dict[str, str] = {}  # database alias -> md5 of the seed tables after post_migrate


class _TooLarge(Exception):
    """A table holds more than DELETE_LIMIT rows: truncate everything instead."""


def _seed_md5(cursor: Any) -> str:
    cursor.execute(
        "SELECT md5(coalesce((SELECT string_agg(t::text, ';' ORDER BY t.id)"
        " FROM django_content_type t), '') || '|' || coalesce((SELECT"
        " string_agg(p::text, ';' ORDER BY p.id) FROM auth_permission p), ''))"
    )
    return str(cursor.fetchone()[0])


def _only_django_receivers() -> bool:
    from django.db.models.signals import post_migrate

    names = {getattr(r, "__name__", "") for r in post_migrate._live_receivers(None)[0]}
    return names <= {"create_permissions", "create_contenttypes"}


def _rows_per_table(cursor: Any, quoted: list[str]) -> dict[str, int]:
    """Rows (capped at DELETE_LIMIT + 1) of each table that has any, in one query."""
    parts = [
        f"SELECT {i}, (SELECT count(*) FROM (SELECT 1 FROM {q} LIMIT {DELETE_LIMIT + 1}) s)"
        for i, q in enumerate(quoted)
    ]
    cursor.execute(f"SELECT * FROM ({' UNION ALL '.join(parts)}) c(i, n) WHERE n > 0")
    return {quoted[i]: n for i, n in cursor.fetchall()}


def flush_touched(alias: str = "default") -> list[str]:
    """Empty the tables of ``alias`` that have rows; returns the tables deleted from."""
    connection = connections[alias]
    ops = connection.ops
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    quoted = [ops.quote_name(t) for t in sorted(tables)]
    seeds = {ops.quote_name(t) for t in SEED_TABLES if t in tables}
    keep_seeds = alias in _seeded and _only_django_receivers()
    try:
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {', '.join(quoted)} IN SHARE MODE")
            rows = _rows_per_table(cursor, quoted)
            if any(n > DELETE_LIMIT for n in rows.values()):
                raise _TooLarge
            if keep_seeds and seeds and _seed_md5(cursor) == _seeded[alias]:
                rows = {q: n for q, n in rows.items() if q not in seeds}
            else:
                keep_seeds = False
            for table in rows:
                cursor.execute(f"DELETE FROM {table}")
    except _TooLarge:
        _django_flush(alias)
        return quoted
    if not keep_seeds:
        _post_migrate(alias)
    return list(rows)


def _post_migrate(alias: str) -> None:
    from django.core.management.sql import emit_post_migrate_signal

    emit_post_migrate_signal(0, False, alias)
    with connections[alias].cursor() as cursor:
        _seeded[alias] = _seed_md5(cursor)


def _django_flush(alias: str) -> None:
    call_command("flush", verbosity=0, interactive=False, database=alias, reset_sequences=False)
    with connections[alias].cursor() as cursor:
        _seeded[alias] = _seed_md5(cursor)


_django_teardown = TransactionTestCase._fixture_teardown


def _fixture_teardown(self: TransactionTestCase) -> None:
    names = self._databases_names(include_mirrors=False)  # type: ignore[attr-defined]
    if (
        self.available_apps is not None
        or self.serialized_rollback
        or any(connections[name].vendor != "postgresql" for name in names)
    ):
        _django_teardown(self)
        return
    for name in names:
        flush_touched(name)


def install() -> None:
    """Make every transactional test end with ``flush_touched`` (PostgreSQL only)."""
    TransactionTestCase._fixture_teardown = _fixture_teardown  # type: ignore[method-assign]
