"""Celery entry points of billing (thin: they call services)."""

from __future__ import annotations

from celery import shared_task

from billing.services import reservations_sweep


@shared_task(name="billing.sweep_reservations", acks_late=True, soft_time_limit=60, time_limit=90)
def sweep_reservations() -> int:
    """Release holds of requests whose worker died before settling."""
    return reservations_sweep()
