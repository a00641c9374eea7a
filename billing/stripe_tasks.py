"""Periodic billing tasks of the Stripe part: automatic top-ups and budget alert emails.

Registered with Celery through ``CELERY_IMPORTS`` (``autodiscover_tasks`` only finds
``tasks.py``); both are safe to run concurrently and repeatedly.
"""

from __future__ import annotations

import logging

from celery import shared_task

from billing.budget_alerts import budget_alerts_check_all
from billing.stripe_payments import auto_topup_run, auto_topups_due

logger = logging.getLogger(__name__)


@shared_task(name="billing.auto_topups", acks_late=True, soft_time_limit=120, time_limit=180)
def auto_topups() -> int:
    """Charge saved cards of organizations whose balance fell below their threshold."""
    started = 0
    for organization in auto_topups_due():
        try:
            if auto_topup_run(organization=organization) is not None:
                started += 1
        except Exception:
            # One organization's Stripe trouble must not stop the others' top-ups.
            logger.exception("auto top-up of %s failed", organization.slug)
    return started


@shared_task(name="billing.budget_alerts", acks_late=True, soft_time_limit=300, time_limit=360)
def budget_alerts() -> int:
    """Email owners of organizations that crossed 50/80/100 % of their monthly budget."""
    return budget_alerts_check_all()
