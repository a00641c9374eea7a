"""Celery entry points of billing (thin: they call services)."""

from __future__ import annotations

import logging

from celery import shared_task
from redis.exceptions import RedisError

from billing.outbox import usage_outbox_drain
from billing.retention import prompts_expire
from billing.services import reservations_sweep

logger = logging.getLogger(__name__)


@shared_task(name="billing.sweep_reservations", acks_late=True, soft_time_limit=60, time_limit=90)
def sweep_reservations() -> int:
    """Settle expired holds whose usage never arrived: released when the gateway marked them
    free, else charged at their held amount. The outbox is drained first, so that only drafts
    that are truly lost (not just waiting in Redis) are charged that way; while Redis cannot be
    read, holds are only released, and charged by a later sweep."""
    try:
        usage_outbox_drain()
    except (RedisError, OSError) as exc:
        logger.warning(
            "usage outbox unreadable (%s); charging no expired hold this time", type(exc).__name__
        )
        return reservations_sweep(charge=False)
    return reservations_sweep()


@shared_task(name="billing.drain_usage_outbox", acks_late=True, soft_time_limit=120, time_limit=180)
def drain_usage_outbox() -> int:
    """Settle usage drafts orphaned by gateway workers that died after answering."""
    return usage_outbox_drain()


@shared_task(name="billing.expire_prompts", acks_late=True, soft_time_limit=120, time_limit=180)
def expire_prompts() -> int:
    """Blank stored prompts older than USAGE_PROMPT_RETENTION_DAYS (bounded batches)."""
    return prompts_expire()
