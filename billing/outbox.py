"""Durable hand-over of finished requests' usage: never lost, never doubled.

The gateway calls ``usage_record_async`` after the client has its response. With Redis the draft
is first appended to a Redis list (one round trip), then settled, then removed from the list. A
worker that dies in between leaves the draft in the list, and ``usage_outbox_drain`` (Celery
beat) settles drafts older than ``OUTBOX_GRACE_SECONDS``. Settlement is idempotent per
generation id, so a draft settled twice (the drainer racing a slow worker) is charged once.
Without Redis (the embedded single-machine mode) drafts are settled directly.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from django.conf import settings

from billing.services import UsageDraft, usage_settle, usage_settle_async

logger = logging.getLogger(__name__)

OUTBOX_KEY = "rh:usage-outbox"
OUTBOX_GRACE_SECONDS = 30.0

_async_client: Any = None


def _redis_async() -> Any:
    global _async_client
    if _async_client is None:
        import redis.asyncio

        _async_client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
    return _async_client


def _payload(draft: UsageDraft) -> bytes:
    return orjson.dumps({"at": time.time(), "draft": draft.to_json()})


async def usage_record_async(draft: UsageDraft) -> None:
    """Persist and settle one request's usage; safe to call once per generation."""
    if not settings.REDIS_URL:
        await usage_settle_async(draft)
        return
    client = _redis_async()
    payload = _payload(draft)
    await client.rpush(OUTBOX_KEY, payload)
    try:
        await usage_settle_async(draft)
    except Exception:
        logger.exception(
            "settlement of %s failed; the outbox drainer retries it", draft.generation_id
        )
        return
    await client.lrem(OUTBOX_KEY, 1, payload)


def usage_outbox_drain(*, grace_seconds: float = OUTBOX_GRACE_SECONDS) -> int:
    """Settle drafts left behind by workers that died after answering; returns how many."""
    if not settings.REDIS_URL:
        return 0
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    cutoff = time.time() - grace_seconds
    settled = 0
    payloads: list[bytes] = client.lrange(OUTBOX_KEY, 0, 999)  # type: ignore[assignment]
    for payload in payloads:
        item = orjson.loads(payload)
        if item["at"] > cutoff:
            continue  # a live worker is probably settling it right now
        try:
            usage_settle(UsageDraft.from_json(item["draft"]))
        except Exception:
            logger.exception(
                "outbox draft %s could not be settled", item["draft"].get("generation_id")
            )
            continue
        client.lrem(OUTBOX_KEY, 1, payload)  # type: ignore[arg-type]  # bytes are fine
        settled += 1
    return settled
