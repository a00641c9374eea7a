"""A transactional test's teardown (``tests/db_flush.py``) empties what the test left: every
table, partitions and the ledger's guard tables included, seeds as ``post_migrate`` makes them.

The first two tests run in this order (pytest keeps a module's order among transactional tests).
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test import TransactionTestCase
from django.utils import timezone

from tests.conftest import require_postgres
from tests.db_flush import DELETE_LIMIT, SEED_TABLES, flush_touched
from tests.factories import organization_make, tenants_make
from tests.routing.servers import poll
from tests.statements import statements_everywhere

LEFT: dict[str, Any] = {}
CONNECT_KEYS = {"dbname", "user", "password", "host", "port"}
WAITING = (
    "SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
    " WHERE NOT l.granted AND d.datname = current_database()"
)


def _rows(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
        return int(cursor.fetchone()[0])


def _non_seed_rows() -> dict[str, int]:
    """Rows of every table but the seeds, partitions counted on their own too."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
            " AND c.relname NOT IN ('django_migrations', 'django_content_type', 'auth_permission')"
        )
        tables = [name for (name,) in cursor.fetchall()]
    return {t: n for t in tables if (n := _rows(t))}


@pytest.mark.django_db(transaction=True)
def test_a_transactional_test_leaves_rows_in_many_tables_and_partitions() -> None:
    from billing.models import LedgerEntry, UsageRecord

    require_postgres()
    tenants = tenants_make()
    now = timezone.now()
    for created_at in (now, now + timedelta(days=62)):  # two monthly partitions
        UsageRecord.objects.create(organization=tenants.organization, status="succeeded",
                                   generation_id=f"gen-{uuid.uuid4().hex}", created_at=created_at)  # fmt: skip
    LedgerEntry.objects.create(organization=tenants.organization, kind="promotion",
                               amount=Decimal(1), balance_after=Decimal(1),
                               idempotency_key=f"flush-{uuid.uuid4().hex}")  # fmt: skip
    content_type = ContentType.objects.get_for_model(LedgerEntry)
    Permission.objects.create(codename="left_behind", name="left", content_type=content_type)
    removed = Permission.objects.filter(content_type=content_type).first()
    assert removed is not None
    LEFT["removed"] = removed.codename
    removed.delete()
    LEFT["tables"] = _non_seed_rows()
    assert {"billing_usagerecord", "billing_ledgerentry", "billing_usagegeneration",
            "billing_ledgeridempotency", "accounts_organization"} <= set(LEFT["tables"])  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_the_next_transactional_test_starts_with_empty_tables_and_the_seeds_restored() -> None:
    require_postgres()
    if "tables" not in LEFT:
        pytest.skip("runs after the test before it, which leaves the rows")
    assert _non_seed_rows() == {}
    assert not Permission.objects.filter(codename="left_behind").exists()
    assert Permission.objects.filter(codename=LEFT["removed"]).exists()
    from django.apps import apps

    assert ContentType.objects.count() == len(apps.get_models())


@pytest.mark.django_db(transaction=True)
def test_teardown_deletes_from_the_touched_tables_only_without_truncate() -> None:
    require_postgres()
    organization_make()
    touched = set(_non_seed_rows())
    with statements_everywhere() as seen:
        TransactionTestCase()._fixture_teardown()  # type: ignore[attr-defined]
    assert not [s for s in seen if "TRUNCATE" in s.upper()]
    deleted = {s.split()[-1].strip('"') for s in seen if s.startswith("DELETE FROM")}
    assert deleted - set(SEED_TABLES) == touched  # the seeds too on the session's first
    assert _non_seed_rows() == {}


@pytest.mark.django_db(transaction=True)
def test_a_table_past_the_delete_limit_is_truncated_like_before() -> None:
    from django.contrib.auth import get_user_model

    require_postgres()
    User = get_user_model()
    User.objects.bulk_create(User(email=f"u{i}@example.com") for i in range(DELETE_LIMIT + 1))
    with statements_everywhere() as seen:
        flush_touched()
    assert [s for s in seen if s.startswith("TRUNCATE")]
    assert _non_seed_rows() == {}


@pytest.mark.django_db(transaction=True)
def test_teardown_waits_for_a_transaction_still_open_and_deletes_its_rows() -> None:
    """As TRUNCATE's lock does: a server thread's insert that commits late is not left over."""
    require_postgres()
    params = connection.get_connection_params()
    other = psycopg.connect(**{k: v for k, v in params.items() if k in CONNECT_KEYS})
    other.execute("INSERT INTO django_session (session_key, session_data, expire_date)"
                  " VALUES ('late', '', now())")  # fmt: skip
    done = threading.Event()

    def flush() -> None:
        try:
            flush_touched()
            done.set()
        finally:
            connection.close()

    flusher = threading.Thread(target=flush, daemon=True)
    flusher.start()
    try:
        poll(lambda: other.execute(WAITING).fetchone())
        assert not done.is_set()
    finally:
        other.commit()
        other.close()
        flusher.join(30)
    assert done.is_set()
    assert _rows("django_session") == 0
