"""Reads of the webhook delivery log shared by the API and the dashboard."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import BooleanField, Case, Q, QuerySet, Value, When

from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import attempt_dead_after


def deliveries_with_lost_hint(
    deliveries: QuerySet[WebhookDelivery], *, now: datetime
) -> QuerySet[WebhookDelivery]:
    """``deliveries`` with ``possibly_lost``: a pending attempt queued longer ago than a whole
    attempt may last (``attempt_dead_after()``) that no worker has started. The workers may only
    be busy, so nothing is done about it here: the sweep queues it again only after
    ``queued_lost_after()`` (the broker's redelivery window, an hour by default), and until then
    the log says it may be lost instead of showing it queued with no hint."""
    waited = Q(
        status=DeliveryStatus.PENDING,
        queued_at__lt=now - timedelta(seconds=attempt_dead_after()),
    )
    hint = Case(When(waited, then=Value(True)), default=Value(False), output_field=BooleanField())
    return deliveries.annotate(possibly_lost=hint)
