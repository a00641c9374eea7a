"""Durable hand-over of finished requests' usage: never lost, never doubled, settled in batches.

With Redis, the gateway appends each finished request's usage draft to a Redis stream (one
``XADD``, ~0.1 ms, after the client has its response). A settler task in every gateway process
reads the stream through a consumer group, settles what it read in one transaction
(``usage_settle_batch``) and acknowledges it. A process that dies with drafts read but not
acknowledged leaves them pending in the group; any settler (or the ``billing.drain_usage_outbox``
beat task) claims drafts pending longer than ``CLAIM_IDLE_MS`` and settles them. Settlement is
idempotent per generation id, so a draft settled twice is charged once.

Without Redis (the embedded single-machine mode) each draft is settled directly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings

from billing.settlement import UsageDraft, usage_settle_async, usage_settle_batch

logger = logging.getLogger(__name__)

STREAM = "rh:usage-stream"
GROUP = "settlers"
BATCH_SIZE = 500
BLOCK_MS = 20
CLAIM_IDLE_MS = 30_000
CLAIM_EVERY_S = 10.0


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _drafts(entries: list[Any]) -> tuple[list[bytes], list[UsageDraft]]:
    ids, drafts = [], []
    for entry_id, fields in entries:
        ids.append(entry_id)
        if fields:  # an entry deleted while pending has no fields: nothing to settle
            drafts.append(UsageDraft.from_json(orjson.loads(fields[b"d"])))
    return ids, drafts


class _Settler:
    """The settler of one event loop (one per gateway process)."""

    def __init__(self) -> None:
        import redis.asyncio

        self.client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
        self.consumer = _consumer_name()
        self.task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _ensure_group(self) -> None:
        import redis

        try:
            await self.client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _settle(self, entries: list[Any]) -> None:
        ids, drafts = _drafts(entries)
        if drafts:
            await sync_to_async(usage_settle_batch, thread_sensitive=False)(drafts)
        if ids:
            await self.client.xack(STREAM, GROUP, *ids)
            await self.client.xdel(STREAM, *ids)

    async def _run(self) -> None:
        await self._ensure_group()
        loop = asyncio.get_running_loop()
        last_claim = 0.0
        while True:
            try:
                if loop.time() - last_claim > CLAIM_EVERY_S:
                    last_claim = loop.time()
                    _, claimed, *_ = await self.client.xautoclaim(
                        STREAM, GROUP, self.consumer, CLAIM_IDLE_MS, count=BATCH_SIZE
                    )
                    await self._settle(claimed)
                response = await self.client.xreadgroup(
                    GROUP, self.consumer, {STREAM: ">"}, count=BATCH_SIZE, block=BLOCK_MS
                )
                for _, entries in response or []:
                    await self._settle(entries)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Unacknowledged drafts stay pending and are claimed again; nothing is lost.
                logger.exception("usage settlement failed; retrying in a second")
                await asyncio.sleep(1)

    async def flush(self) -> None:
        """Settle everything this process has read or can read now (graceful shutdown)."""
        if self.task is not None:
            self.task.cancel()
        pending = await self.client.xpending_range(
            STREAM, GROUP, "-", "+", BATCH_SIZE, self.consumer
        )
        if pending:
            ids = [p["message_id"] for p in pending]
            claimed = await self.client.xclaim(STREAM, GROUP, self.consumer, 0, ids)
            await self._settle(claimed)
        while True:
            response = await self.client.xreadgroup(
                GROUP, self.consumer, {STREAM: ">"}, count=BATCH_SIZE
            )
            entries = [e for _, batch in response or [] for e in batch]
            if not entries:
                break
            await self._settle(entries)
        await self.client.aclose()


_settlers: dict[asyncio.AbstractEventLoop, _Settler] = {}


def _settler() -> _Settler:
    loop = asyncio.get_running_loop()
    settler = _settlers.get(loop)
    if settler is None:
        settler = _settlers[loop] = _Settler()
    return settler


async def usage_record_async(draft: UsageDraft) -> None:
    """Hand over one request's usage; it is settled within milliseconds, and exactly once."""
    if not settings.REDIS_URL:
        await usage_settle_async(draft)
        return
    settler = _settler()
    await settler.client.xadd(STREAM, {"d": orjson.dumps(draft.to_json())})
    settler.ensure_running()


async def usage_outbox_flush() -> None:
    """On shutdown: settle what this process still holds."""
    settler = _settlers.pop(asyncio.get_running_loop(), None)
    if settler is not None:
        await settler.flush()


def usage_outbox_drain(*, idle_ms: int = CLAIM_IDLE_MS) -> int:
    """Settle drafts orphaned by dead settlers, or never read; returns how many were handled."""
    if not settings.REDIS_URL:
        return 0
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    consumer = f"drainer-{_consumer_name()}"
    handled = 0
    while True:
        _, claimed, *_ = client.xautoclaim(STREAM, GROUP, consumer, idle_ms, count=BATCH_SIZE)  # type: ignore[misc]
        response: Any = client.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=BATCH_SIZE)
        entries = list(claimed) + [e for _, batch in response or [] for e in batch]
        if not entries:
            return handled
        ids, drafts = _drafts(entries)
        usage_settle_batch(drafts)
        client.xack(STREAM, GROUP, *ids)
        client.xdel(STREAM, *ids)
        handled += len(drafts)
