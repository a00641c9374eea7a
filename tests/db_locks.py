"""Whether a statement of the test database waits for a lock: how a test knows that a thread or
task it started has reached the row or table it races for (poll it with a deadline). And the
gateway's own sessions ended, as a database restart ends them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection, connections, transaction

from tests.routing.servers import poll

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


def race_behind(
    holder: Callable[[], object],
    waiter: Callable[[], object],
    *,
    holding: threading.Event,
    release: threading.Event,
    holder_pid: Callable[[], int],
) -> dict[str, BaseException | None]:
    """Run ``holder`` in a thread until it sets ``holding`` (it holds a lock and waits for
    ``release``), then ``waiter`` in another until it waits for a lock of ``holder_pid()``'s;
    then release both and join them: what each raised (None: it returned), by ``holder`` and
    ``waiter``. Each thread closes its own connection."""
    return _queued(
        holder,
        {"waiter": waiter},
        holding=holding,
        release=release,
        queued=lambda _: waiting_for(holder_pid()),
    )


def queue_behind(
    holder: Callable[[], object],
    waiters: dict[str, Callable[[], object]],
    *,
    holding: threading.Event,
    release: threading.Event,
    pids: dict[str, int],
) -> dict[str, BaseException | None]:
    """``race_behind`` with several waiters, queued in order: each starts once the one before
    waits for a lock (``blocked(pids[name])``: a waiter records its backend's pid there before
    it locks); what each raised, by name (``holder`` too)."""
    return _queued(
        holder,
        waiters,
        holding=holding,
        release=release,
        queued=lambda name: name in pids and blocked(pids[name]),
    )


def _queued(
    holder: Callable[[], object],
    waiters: dict[str, Callable[[], object]],
    *,
    holding: threading.Event,
    release: threading.Event,
    queued: Callable[[str], bool],
) -> dict[str, BaseException | None]:
    outcomes: dict[str, BaseException | None] = {}
    threads = [_outcome_thread(outcomes, "holder", holder)]
    threads[0].start()
    try:
        assert holding.wait(timeout=20)
        for name, call in waiters.items():
            threads.append(_outcome_thread(outcomes, name, call))
            threads[-1].start()
            poll(lambda name=name: queued(name), timeout=10)
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=30)
    return outcomes


def _outcome_thread(
    outcomes: dict[str, BaseException | None], name: str, call: Callable[[], object]
) -> threading.Thread:
    """A thread (not started) running ``call``, storing what it raised (None: it returned) in
    ``outcomes[name]`` and closing its own connection."""
    outcomes[name] = None

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # the caller asserts on it
            outcomes[name] = exc
        finally:
            connection.close()

    return threading.Thread(target=run)


def blocked(pid: int) -> bool:
    """Whether backend ``pid`` waits for a lock another backend holds."""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT cardinality(pg_blocking_pids(%s)) > 0", [pid])
        return bool(cursor.fetchone()[0])


def pause_after_first_row_lock(
    locked: threading.Event, go: threading.Event, *, statements: int = 1
) -> Any:
    """An ``execute_wrapper`` that, after the connection's first ``statements`` ``FOR NO KEY
    UPDATE`` statements, sets ``locked`` and waits for ``go``: a lineage walk holding its first
    level only (its root), or its first ``statements`` levels."""
    seen = [0]

    def wrapper(execute: Any, sql: str, *args: Any) -> Any:
        result = execute(sql, *args)
        if "FOR NO KEY UPDATE" in sql and not locked.is_set():
            seen[0] += 1
            if seen[0] == statements:
                locked.set()
                go.wait(timeout=20)
        return result

    return wrapper


def scans_in_disk_order() -> None:
    """This connection's plans scan tables in disk order, as a small table's do (forced, so a
    test does not depend on the planner's statistics)."""
    with connection.cursor() as cursor:
        cursor.execute("SET enable_indexscan = off")
        cursor.execute("SET enable_bitmapscan = off")


def while_uncommitted(write: Callable[[], object], other: Callable[[], object]) -> object:
    """Run ``write`` in a transaction held open (a thread), then ``other`` in another thread
    until it waits for a lock of that transaction or ends; then commit and join both: what
    ``other`` raised (None: it returned). On code where ``other`` takes no lock ``write`` holds,
    it just runs to its end before the commit."""
    holding, release = threading.Event(), threading.Event()
    pids: list[int] = []
    outcome: dict[str, BaseException | None] = {"other": None}

    def hold() -> None:
        try:
            with transaction.atomic():
                pids.append(backend_pid())
                write()
                holding.set()
                release.wait(timeout=20)
        finally:
            connection.close()

    def run() -> None:
        try:
            other()
        except BaseException as exc:  # the caller asserts on it
            outcome["other"] = exc
        finally:
            connection.close()

    holder, runner = threading.Thread(target=hold), threading.Thread(target=run)
    holder.start()
    try:
        assert holding.wait(timeout=20)
        runner.start()
        poll(lambda: waiting_for(pids[0]) or not runner.is_alive(), timeout=10)
    finally:
        release.set()
        holder.join(timeout=30)
        runner.join(timeout=30)
    return outcome["other"]
