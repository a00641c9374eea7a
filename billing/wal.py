"""The write-ahead log and settlement's durability: settlement commits without waiting for the
disk (so the organization's account row is not locked through an fsync) and then waits here for
its WAL to reach the disk before anyone learns the batch is settled."""

from __future__ import annotations

import time

from django.db import connection, transaction

# How long a wait for the WAL writer lasts before the waiter forces the flush itself (the WAL
# writer flushes asynchronous commits every wal_writer_delay, 200 ms by default).
WAL_NUDGE_AFTER_S = 0.5


def wal_commit_without_waiting() -> None:
    """Let this transaction's commit return before its WAL reaches the disk.

    The organization's account row stays locked until commit, and every new request of the
    organization updates that row to reserve: a synchronous commit kept them waiting for the
    disk flush (measured: a 5-8 ms stall of the gateway every batch, most of its p99 at
    concurrency 1). Durability is restored by ``wal_wait_durable`` before anyone learns the
    batch is settled: the outbox acknowledges drafts only after it returns, so a crash before
    the flush leaves them pending, and settling them again is idempotent.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


def wal_position(*, flushed: bool = False) -> int | None:
    """PostgreSQL: the end of the WAL written so far (covering every transaction committed
    before), or with ``flushed`` the end of what is on disk; ``None`` elsewhere."""
    if connection.vendor != "postgresql":
        return None
    function = "pg_current_wal_flush_lsn" if flushed else "pg_current_wal_insert_lsn"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}()::text")
        high, _, low = str(cursor.fetchone()[0]).partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def wal_wait_durable(timeout: float = 10.0) -> None:
    """Block until the WAL written so far is on disk; raises if it is not within ``timeout``,
    so the caller treats the batch as not yet settled.

    PostgreSQL's WAL writer flushes asynchronous commits within a few hundred ms, but only up to
    the last asynchronous commit: WAL that other sessions wrote after ours on a page not yet full
    waits for the next commit anywhere. On a quiet database that may never come, so after
    ``WAL_NUDGE_AFTER_S`` the wait forces the flush itself (``wal_flush_force``).
    """
    deadline = time.monotonic() + timeout
    nudge_at = time.monotonic() + WAL_NUDGE_AFTER_S
    written = wal_position()
    while True:
        flushed = wal_position(flushed=True)
        if written is None or flushed is None or flushed >= written:
            return
        if time.monotonic() > nudge_at:
            wal_flush_force()
            nudge_at = deadline
            continue
        if time.monotonic() > deadline:
            raise TimeoutError("the database did not flush its WAL in time")
        time.sleep(0.01)


def wal_flush_force() -> None:
    """Flush every WAL record inserted so far: a synchronous commit of a transaction that wrote
    WAL flushes it up to its own commit record (one fsync). A transactional logical message is
    the smallest such write any role may make (an xid alone writes no WAL and commits
    asynchronously)."""
    if connection.vendor != "postgresql":
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO ON")
        cursor.execute("SELECT pg_logical_emit_message(true, 'routerhub.flush', '')")
