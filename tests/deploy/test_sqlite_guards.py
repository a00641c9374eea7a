"""``make run``'s SQLite database keeps the usage uniqueness trigger through every migration, so a
settled request can be rated (``POST /api/v1/feedback``) there as on PostgreSQL.

SQLite rebuilds a table for a later migration's column change and drops its triggers with the old
table: ``billing_usagerecord``'s claim trigger (``billing.partition_schema``) was gone once all
migrations had run, so usage was recorded without its ``billing_usagegeneration`` row, and
feedback on every request of ``make run`` was a 503 "not settled yet" for good (README's Python
client example failed there). The database is migrated as ``make run`` migrates it, in a
subprocess (``tests/deploy/test_runlocal.py``'s fixture).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.deploy.test_runlocal import _free_port, _local_env, _manage, _migrated_env, migrated

__all__ = ["migrated"]  # the module's fixture: one migration for this module's tests

RATE_A_SETTLED_REQUEST = """
from decimal import Decimal
from billing.models import UsageGeneration
from billing.services import ledger_post
from routing.feedback import feedback_record
from tests.factories import key_make, organization_make, usage_served
organization = organization_make()
ledger_post(organization=organization, kind="promotion", amount=Decimal("1"), idempotency_key="t")
key = key_make(organization)
generation_id = usage_served(organization, None, "demo/small", "0.001")
assert UsageGeneration.objects.filter(generation_id=generation_id).exists(), "no guard row"
feedback = feedback_record(
    organization_id=organization.pk, generation_id=generation_id, score=1.0, key_id=None
)
print("FEEDBACK", feedback.score)
"""


def test_the_usage_claim_trigger_survives_every_migration_on_sqlite(migrated: Path) -> None:
    with sqlite3.connect(migrated) as connection:
        query = "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"
        triggers = dict(connection.execute(query).fetchall())
    assert triggers == {
        "usage_generation_claim": "billing_usagerecord",
        "ledger_key_claim": "billing_ledgerentry",
        "ledger_key_release": "billing_ledgerentry",
    }


def test_a_settled_request_can_be_rated_on_make_runs_database(
    tmp_path: Path, migrated: Path
) -> None:
    env = _migrated_env(tmp_path, _free_port(), migrated)
    done = _manage(env, "shell", "-c", RATE_A_SETTLED_REQUEST)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FEEDBACK 1.0" in done.stdout


def test_a_partial_migrate_of_a_fresh_database_succeeds(tmp_path: Path) -> None:
    """``post_migrate`` runs after ``migrate contenttypes`` too: billing's tables are not there."""
    env = _local_env(tmp_path, _free_port())
    done = _manage(env, "migrate", "contenttypes", "--noinput")
    assert done.returncode == 0, done.stderr[-3000:]
