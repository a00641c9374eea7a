"""Durable hand-over of finished requests' usage: never lost, never doubled, settled in batches.

With Redis, the gateway appends each finished request's usage draft to a Redis stream (an
``XADD`` after the client has its response; drafts that finish while one write is in flight
share the next pipelined write). A settler (``usage_settler_run``: a process of its own beside
the gateway workers under ``make serve``, or a thread in each process with
``USAGE_SETTLER=worker``) reads the stream through a consumer group, settles what it read in
one transaction (``usage_settle_batch``) and acknowledges it once it is on disk. A settler that
dies with drafts read but not acknowledged leaves them pending in the group; any settler (or
the ``billing.drain_usage_outbox`` beat task) claims drafts pending longer than
``CLAIM_IDLE_MS`` and settles them. Settlement is idempotent per generation id, so a draft
settled twice is charged once.

Without Redis (the embedded single-machine mode) each draft is settled directly, and so is a
draft whose ``XADD`` fails because Redis is unreachable: an outage of Redis costs a synchronous
settlement per request, never a lost charge. A settler whose batch fails (PostgreSQL down)
re-reads its own pending drafts a second later; one that finds its group gone (Redis restarted
without its data) creates it again. Drafts already in the stream survive a Redis crash only if
Redis persists them (AOF, as deploy/docker-compose.yml runs it): a requirement of production.
When they are lost all the same, their holds are not: the reservation sweep charges a hold whose
draft never arrived at its held amount (``reservations_sweep``). So that a request with nothing to
charge (it failed before any answer) is not charged that way, its hold is marked ``free`` in
PostgreSQL before its draft is appended.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import connections

from billing.drafts import UsageDraft, draft_encode
from billing.outbox_consumers import GROUP, STREAM, consumer_name, consumers_forget, group_ensure
from billing.outbox_entries import entries_settle
from billing.services import reservation_mark_free_async
from billing.settlement import usage_settle_async
from billing.wal import WAL_NUDGE_AFTER_S, wal_flush_force, wal_position
from routerhub.redis_clients import redis_client, redis_client_async

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
# The settler's pause after a batch that did not fill. After a small batch (light traffic: CPU
# to spare, and latency is what counts) it is short, so that each batch is a short burst of CPU
# beside the gateway's requests; after a larger one (busy: CPU is what counts) it is longer, so
# that each batch's fixed cost (~3.7 ms of CPU) is shared by more drafts. Measured at
# concurrency 1 on the idle machine (bench.side_by_side, 8 alternating runs of 500 each way): a
# 0.02 s pause against 0.1 s took the pooled client p99 from 4.09 to 3.45 ms (lower in 6 of 8
# pairs); 0.5 s made it worse (3.75 -> 4.59 ms): long batches delay more. README, "Issue 21".
SETTLER_PAUSE_SHORT_S = 0.02
SETTLER_PAUSE_S = 0.1
SETTLER_SMALL_BATCH = 32
OUTBOX_COALESCE_S = 0.003
CLAIM_IDLE_MS = 30_000
CLAIM_EVERY_S = 10.0
READ_BLOCK_MS = 1000  # a settler's XREADGROUP waits this long for new drafts


class _Outbox:
    """One event loop's side of the stream: group-committed appends and, with
    ``USAGE_SETTLER=worker``, this process's settler (``usage_settler_run`` in a thread)."""

    def __init__(self) -> None:
        self.client = redis_client_async()
        self.outgoing: list[tuple[bytes, asyncio.Future[None]]] = []
        self.writer: asyncio.Task[None] | None = None
        self.now = False  # the next write starts without waiting for companions
        self.settler: threading.Thread | None = None
        self.stop = threading.Event()

    async def append(self, payload: bytes, *, coalesce: bool = True) -> None:
        """XADD one draft; drafts handed over while a write is in flight go in the next one,
        one pipelined round trip for all of them (group commit). ``coalesce``: wait
        ``OUTBOX_COALESCE_S`` for companions first (other requests are in flight, and finish
        soon); without it the write starts now (a lone request: nobody else will come, and
        the write is done before the client's next request arrives instead of in its middle)."""
        done = asyncio.get_running_loop().create_future()
        self.outgoing.append((payload, done))
        self.now = self.now or not coalesce
        if self.writer is None or self.writer.done():
            self.writer = asyncio.ensure_future(self._write())
        await done

    async def _write(self) -> None:
        while self.outgoing:
            if not self.now:
                # Gather the drafts of requests finishing within the next few ms into this
                # write: a round trip per draft was the largest Redis cost per request under
                # load (each request's task just waits a little longer; its client already has
                # the answer).
                await asyncio.sleep(OUTBOX_COALESCE_S)
            batch, self.outgoing, self.now = self.outgoing, [], False
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for payload, _ in batch:
                        pipe.xadd(STREAM, {"d": payload})
                    await pipe.execute()
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    def settler_ensure(self) -> None:
        if self.settler is None or not self.settler.is_alive():
            self.settler = threading.Thread(
                target=usage_settler_run, args=(self.stop,), name="usage-settler", daemon=True
            )
            self.settler.start()

    async def close(self) -> None:
        """Finish the appends in flight; stop the settler after its batch (what it settled is
        acknowledged; what it did not read waits in the stream for the next settler)."""
        if self.writer is not None and not self.writer.done():
            await asyncio.wait({self.writer}, timeout=5)
        if self.settler is not None:
            self.stop.set()
            await asyncio.to_thread(self.settler.join, 15)
        await self.client.aclose()


_outboxes: dict[asyncio.AbstractEventLoop, _Outbox] = {}


def _outbox() -> _Outbox:
    loop = asyncio.get_running_loop()
    outbox = _outboxes.get(loop)
    if outbox is None:
        outbox = _outboxes[loop] = _Outbox()
    return outbox


async def usage_record_async(draft: UsageDraft, *, coalesce: bool = True) -> None:
    """Hand over one request's usage; it is settled within a fraction of a second, and exactly
    once. ``coalesce=False``: nothing else is in flight, append without waiting for companions
    (``_Outbox.append``)."""
    if not settings.REDIS_URL:
        await usage_settle_async(draft)
        return
    import redis

    if draft.cost <= 0:
        await reservation_mark_free_async(draft.generation_id)
    outbox = _outbox()
    try:
        await outbox.append(draft_encode(draft), coalesce=coalesce)
    except (redis.RedisError, OSError) as exc:
        # Redis is unreachable: settle this one now rather than lose it. If the XADD did land
        # after all, the settler's copy is a no-op (settlement is idempotent per generation id).
        logger.warning(
            "usage outbox unavailable (%s); settling %s directly", exc, draft.generation_id
        )
        await usage_settle_async(draft)
        return
    if settings.USAGE_SETTLER == "worker":
        outbox.settler_ensure()


async def usage_outbox_flush() -> None:
    """On shutdown: finish this process's appends and stop its settler, if it runs one."""
    outbox = _outboxes.pop(asyncio.get_running_loop(), None)
    if outbox is not None:
        await outbox.close()


def usage_settlers_stop(timeout: float = 15) -> None:
    """Stop this process's in-process settlers (``USAGE_SETTLER=worker``) after their batch; the
    next draft starts a fresh one. For a long-lived server that a caller pointed at another
    Redis or database for a while (the tests' shared gateway), so that no settler outlives it."""
    for outbox in list(_outboxes.values()):
        if outbox.settler is not None:
            outbox.stop.set()
            outbox.settler.join(timeout)
            outbox.settler, outbox.stop = None, threading.Event()


def usage_settler_run(stop: threading.Event) -> None:
    """The dedicated settler process (``manage.py usage_settler``; ``make serve`` starts one
    beside the gateway workers): settle the stream in batches until ``stop`` is set.

    Gateway workers then only append. Measured on ``make bench``: a settler inside every worker
    took the GIL from requests for each batch — about a quarter of the throughput and most of
    the p99 at concurrency 1. Batches are small and frequent (short bursts of CPU next to the
    gateway) and commit without waiting for the disk; their drafts are acknowledged once the
    database has flushed them, so a crash in between leaves them pending to be settled again
    (idempotently). Several settler processes may run (they share the consumer group).
    Failures never lose drafts: they stay pending and are retried a second later; a group lost
    with a restarted Redis's data is created again; connections a database restart broke are
    dropped before the next batch.
    """
    from routerhub.db import db_connections_drop_broken

    client = redis_client(block_s=READ_BLOCK_MS / 1000)
    consumer = f"settler-{consumer_name()}"
    group_ready, last_claim, own_pending = False, 0.0, True
    unacknowledged: list[Unacknowledged] = []
    logger.info("usage settler %s started", consumer)
    while not stop.is_set():
        try:
            if not group_ready:
                group_ensure(client)
                group_ready = True
            db_connections_drop_broken()
            claim = time.monotonic() - last_claim > CLAIM_EVERY_S
            entries = _settler_read(client, consumer, own_pending=own_pending, claim=claim)
            own_pending = False
            if claim:
                last_claim = time.monotonic()
            if entries:
                ids = entries_settle(client, entries, wait_durable=False)
                unacknowledged.append((wal_position(), ids, time.monotonic()))
            unacknowledged = _acknowledge_durable(client, unacknowledged)
            if len(entries) < BATCH_SIZE:  # a short burst of work, then let others run
                small = len(entries) < SETTLER_SMALL_BATCH
                stop.wait(SETTLER_PAUSE_SHORT_S if small else SETTLER_PAUSE_S)
        except Exception as exc:
            group_ready = group_ready and "NOGROUP" not in str(exc)
            own_pending = True
            logger.exception("usage settlement failed; retrying in a second")
            stop.wait(1)
    _settler_finish(client, consumer, unacknowledged)


def _settler_finish(client: Any, consumer: str, unacknowledged: list[Unacknowledged]) -> None:
    """Acknowledge what the settler settled (for up to 10 s); leave the group if nothing it
    read is still pending (else its consumer stays until that is claimed: ``_settler_read``)."""
    deadline = time.monotonic() + 10
    while unacknowledged and time.monotonic() < deadline:
        try:
            unacknowledged = _acknowledge_durable(client, unacknowledged)
        except Exception:
            logger.exception("could not acknowledge settled drafts; they will be settled again")
            break
        if unacknowledged:
            time.sleep(0.02)
    consumers_forget(client, idle_ms=CLAIM_IDLE_MS, leaving=consumer)
    client.close()
    connections.close_all()  # this thread's (when it runs in a gateway process)
    logger.info("usage settler %s stopped", consumer)


def _settler_read(client: Any, consumer: str, *, own_pending: bool, claim: bool) -> list[Any]:
    """What to settle next: this consumer's unacknowledged drafts after a failure, or drafts
    dead consumers left (when ``claim``), or else new ones (waiting up to a second)."""
    if own_pending:  # "0": what this consumer read but did not acknowledge
        response: Any = client.xreadgroup(GROUP, consumer, {STREAM: "0"}, count=BATCH_SIZE)
        entries = [e for _, batch in response or [] for e in batch]
        if entries:
            return entries
    if claim:
        consumers_forget(client, idle_ms=CLAIM_IDLE_MS)
        _, claimed, *_ = client.xautoclaim(STREAM, GROUP, consumer, CLAIM_IDLE_MS, count=BATCH_SIZE)
        if claimed:
            return list(claimed)
    response = client.xreadgroup(
        GROUP, consumer, {STREAM: ">"}, count=BATCH_SIZE, block=READ_BLOCK_MS
    )
    return [e for _, batch in response or [] for e in batch]


# Settled drafts waiting for their WAL to reach the disk: (WAL position, entry ids, since).
Unacknowledged = tuple[int | None, list[bytes], float]


def _acknowledge_durable(client: Any, unacknowledged: list[Unacknowledged]) -> list[Unacknowledged]:
    """Acknowledge (and delete) the drafts whose settlement is on disk; return the rest.

    A batch still waiting after ``WAL_NUDGE_AFTER_S`` has its flush forced: the WAL writer
    alone may leave it on an unfinished page until the next commit anywhere."""
    if not unacknowledged:
        return unacknowledged
    flushed = wal_position(flushed=True)

    def durable(position: int | None) -> bool:
        return flushed is None or position is None or position <= flushed

    waiting = [since for position, _, since in unacknowledged if not durable(position)]
    if waiting and time.monotonic() - min(waiting) > WAL_NUDGE_AFTER_S:
        wal_flush_force()
        flushed = wal_position(flushed=True)
    ids = [
        entry_id for position, batch, _ in unacknowledged if durable(position) for entry_id in batch
    ]
    if ids:
        pipe = client.pipeline(transaction=False)
        pipe.xack(STREAM, GROUP, *ids)
        pipe.xdel(STREAM, *ids)
        pipe.execute()
    return [entry for entry in unacknowledged if not durable(entry[0])]


def _settle_sync(client: Any, entries: list[Any]) -> int:
    ids = entries_settle(client, entries, wait_durable=True)
    if ids:
        pipe = client.pipeline(transaction=False)
        pipe.xack(STREAM, GROUP, *ids)
        pipe.xdel(STREAM, *ids)
        pipe.execute()
    return len(ids)


def usage_outbox_drain(*, idle_ms: int = CLAIM_IDLE_MS) -> int:
    """Settle drafts orphaned by dead settlers, or never read; returns how many were handled."""
    if not settings.REDIS_URL:
        return 0
    client = redis_client()
    group_ensure(client)
    consumer = f"drainer-{consumer_name()}"
    handled = 0
    while True:
        # Why the ignore below: redis-py types xautoclaim as Awaitable | Any for its sync and async
        # clients; this client is sync, and its answer a list.
        _, claimed, *_ = client.xautoclaim(STREAM, GROUP, consumer, idle_ms, count=BATCH_SIZE)  # type: ignore[misc]
        response: Any = client.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=BATCH_SIZE)
        entries = list(claimed) + [e for _, batch in response or [] for e in batch]
        if not entries:
            consumers_forget(client, idle_ms=idle_ms, leaving=consumer)
            return handled
        handled += _settle_sync(client, entries)
