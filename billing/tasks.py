"""Celery entry points of billing (thin: they call services)."""

from __future__ import annotations

from celery import shared_task

from billing.outbox import usage_outbox_drain
from billing.services import reservations_sweep


@shared_task(name="billing.sweep_reservations", acks_late=True, soft_time_limit=60, time_limit=90)
def sweep_reservations() -> int:
    """Release holds of requests whose worker died before settling."""
    return reservations_sweep()


@shared_task(name="billing.drain_usage_outbox", acks_late=True, soft_time_limit=120, time_limit=180)
def drain_usage_outbox() -> int:
    """Settle usage drafts orphaned by gateway workers that died after answering."""
    return usage_outbox_drain()
