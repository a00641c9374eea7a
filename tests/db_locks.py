"""Whether a statement of the test database waits for a lock: how a test knows that a thread or
task it started has reached the row or table it races for (poll it with a deadline). And the
gateway's own sessions ended, as a database restart ends them."""

from __future__ import annotations

from django.db import connections

# Backends of the test database waiting for a heavyweight lock (a row or a table).
LOCK_WAITS_SQL = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock'"
)


def waiting_on_a_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute(LOCK_WAITS_SQL)
        return bool(cursor.fetchone()[0])


def backend_pid() -> int:
    """This thread's connection's backend: what ``waiting_for`` of another thread looks for."""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def waiting_for(pid: int) -> bool:
    """Whether a backend waits for a lock that backend ``pid`` holds (a row it wrote, a key it
    claimed): not merely waiting, as a backend woken by a lock just released still shows."""
    return bool(backends_waiting_for(pid))


def backends_waiting_for(pid: int) -> list[int]:
    """The backends (their pids) waiting for a lock that backend ``pid`` holds. (Inside a
    transaction PostgreSQL answers ``pg_stat_activity`` from a snapshot taken at its first read:
    cleared, each poll sees the backends as they are.)"""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [pid]
        )
        return [int(row[0]) for row in cursor.fetchall()]


def gateway_sessions_terminate() -> int:
    """End the sessions of the gateway's own connections (``billing.pg_async``); how many."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'routerhub-gateway' AND datname = current_database()"
        )
        return int(cursor.fetchone()[0])
