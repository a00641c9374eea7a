"""The periodic task of the Stripe part: automatic top-ups (safe to run concurrently and
repeatedly). Found by ``autodiscover_tasks(["billing.stripe"])`` in ``routerhub.celery``."""

from __future__ import annotations

import logging

from celery import shared_task

from billing.stripe.payments import auto_topup_run, auto_topups_due

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
