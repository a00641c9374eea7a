"""Adding a column to a table keeps to a catalogue change: no ``ADD COLUMN`` carries a ``CHECK``
constraint, which PostgreSQL validates by scanning every row under the ``ACCESS EXCLUSIVE`` lock
the ``ALTER TABLE`` holds — on the usage table, minutes of a stopped gateway. And an added
column keeps its database default (``db_default``): a ``DROP DEFAULT`` after it makes an old pod's
insert, which does not name the column, fail on ``NOT NULL`` during a rolling deploy. A migration on a table that exists adds no foreign
key (``REFERENCES`` locks the referenced table too, until the migration commits: a key column
stopped the gateway's key lookup) and builds no index but ``CONCURRENTLY`` (a plain ``CREATE
INDEX`` blocks the table's writes for the whole build)."""

from __future__ import annotations

import functools
import io
import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

# Outside a test transaction: ``sqlmigrate`` of a ``CONCURRENTLY`` index refuses an open one.
pytestmark = pytest.mark.django_db(transaction=True)

# Released already, on small tables (datasets, routers): left as they are.
RELEASED_WITH_A_CHECK = {
    ("training", "0002_dataset_validation_attempts_one_active_run"),
    ("training", "0003_router_lifecycle_and_audit_log"),
}
# Released already, before a rolling deploy mattered: left as they are.
RELEASED_DROPPING_A_DEFAULT = {
    ("routing", "0002_provider_key_base_url"),
    ("routing", "0003_catalog_embeddings"),
    ("routing", "0008_pipeline_parallel_kind_and_options"),
    ("routing", "0012_selection_latency_and_model_categories"),
    ("training", "0002_dataset_validation_attempts_one_active_run"),
    ("training", "0003_router_drift_reference_and_checks"),
    ("training", "0006_dataset_validation_requeues"),
}
# Released already: left as they are.
RELEASED_LOCKING_A_TABLE = {
    ("accounts", "0006_organization_created_by"),
    ("accounts", "0010_apikey_created_by_key"),
    ("billing", "0006_feedback_to_routing_usage_router_id"),
    ("billing", "0008_usage_rollups"),
    ("billing", "0011_partition_usage_and_ledger_by_month"),
    ("routing", "0008_feedback_usage_generation"),
    ("routing", "0011_stored_response_org_newest"),
    ("routing", "0014_selection_session_prompt_kept"),
    ("training", "0002_dataset_validation_attempts_one_active_run"),
    ("training", "0003_router_lifecycle_and_audit_log"),
}
APPS = ("accounts", "billing", "routing", "training", "webhooks")


@functools.cache
def _statements() -> tuple[tuple[str, str, str], ...]:
    """Every statement of every migration of ``APPS``, as (app, name, statement): read once for
    both tests (``sqlmigrate`` rebuilds the project state for each migration, ~20 s in all)."""
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    found = []
    for app, name in sorted(loader.disk_migrations):
        if app not in APPS:
            continue
        out = io.StringIO()
        call_command("sqlmigrate", app, name, stdout=out, no_color=True)
        found.extend((app, name, statement) for statement in out.getvalue().split(";"))
    return tuple(found)


def _statements_matching(pattern: str, released: set[tuple[str, str]]) -> list[str]:
    return [
        f"{app}.{name}: {statement.strip()[:200]}"
        for app, name, statement in _statements()
        if (app, name) not in released and re.search(pattern, statement, re.S)
    ]


def test_no_added_column_carries_a_check() -> None:
    assert _statements_matching(r"ADD COLUMN .*CHECK", RELEASED_WITH_A_CHECK) == []


def test_no_migration_drops_a_columns_default() -> None:
    """routing 0015 added three NOT NULL columns, then dropped their defaults."""
    assert _statements_matching(r"DROP DEFAULT", RELEASED_DROPPING_A_DEFAULT) == []


def test_no_migration_locks_an_existing_table_for_a_foreign_key_or_an_index_build() -> None:
    """routing 0017 added ``SelectionSession.key`` with a foreign key to ``accounts_apikey`` and a
    plain index, in one transaction."""
    created = {
        (app, name, table)
        for app, name, statement in _statements()
        for table in re.findall(r'CREATE TABLE "(\w+)"', statement)
    }
    found = []
    for app, name, statement in _statements():
        table = re.search(r'ALTER TABLE "(\w+)".*REFERENCES', statement, re.S) or re.search(
            r'CREATE (?:UNIQUE )?INDEX (?!CONCURRENTLY)"\w+" ON "(\w+)"', statement
        )
        locked = (app, name) not in RELEASED_LOCKING_A_TABLE
        if table and locked and (app, name, table.group(1)) not in created:
            found.append(f"{app}.{name}: {statement.strip()[:200]}")
    assert found == []
