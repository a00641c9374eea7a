"""Celery entry points for webhooks; they only call ``webhooks.delivery``."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from webhooks import delivery, services

# One attempt: connect + write + read timeouts, the bounded body read, and room for DNS.
_SOFT = int(4 * settings.WEBHOOK_TIMEOUT_SECONDS) + 15


@shared_task(name="webhooks.deliver", acks_late=True, soft_time_limit=_SOFT, time_limit=_SOFT + 15)
def webhook_deliver(delivery_id: int, attempt: int) -> str | None:
    # No Celery retry here: a failed attempt records its next_retry_at and the sweep below
    # queues it, so retries survive a broker restart and never run forever.
    return delivery.webhook_delivery_attempt(delivery_id=delivery_id, attempt=attempt)


@shared_task(name="webhooks.retry_due", acks_late=True, soft_time_limit=60, time_limit=90)
def webhook_deliveries_retry_due() -> int:
    return len(delivery.webhook_deliveries_retry_due())


@shared_task(name="webhooks.deliveries_prune", acks_late=True, soft_time_limit=120, time_limit=150)
def webhook_deliveries_prune() -> int:
    # Bounded per run (services.PRUNE_BATCHES, PRUNE_SECONDS); what is left waits an hour.
    return services.webhook_deliveries_prune()
