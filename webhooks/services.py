"""Webhook endpoints (create, change, delete) and ``webhook_event_emit``, the one way any app
announces an event to an organization's receivers.

Emitting writes one delivery row per subscribed endpoint and queues their first attempts after
the transaction commits; sending happens in Celery (``webhooks.delivery``), never in the caller.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from routerhub.domain import InvalidInput, NotFound
from routerhub.row_update import row_update
from routing.egress import base_url_check
from routing.provider_secrets import secret_decrypt, secret_encrypt
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once; only its encrypted form is kept


def _events_check(events: list[str]) -> list[str]:
    known = set(WebhookEvent.values)
    unknown = [e for e in events if e not in known]
    if unknown or not events:
        raise InvalidInput(
            f"events must be a non-empty list of {', '.join(WebhookEvent.values)}.",
            param="events",
        )
    return list(dict.fromkeys(events))


def webhook_url_check(url: str, organization_id: int) -> str:
    """The URL if deliveries may reach it (public address unless WEBHOOK_ALLOW_PRIVATE_URLS)."""
    return base_url_check(
        url, param="url", allow_private=settings.WEBHOOK_ALLOW_PRIVATE_URLS, tenant=organization_id
    )


def _endpoints_cap_check(organization: Any) -> None:
    limit = settings.WEBHOOK_ENDPOINTS_PER_ORGANIZATION
    if WebhookEndpoint.objects.filter(organization=organization).count() >= limit:
        raise InvalidInput(
            f"An organization has at most {limit} webhook endpoints "
            "(WEBHOOK_ENDPOINTS_PER_ORGANIZATION); delete one first."
        )


def webhook_endpoint_create(
    *, organization: Any, url: str, events: list[str], description: str = "", enabled: bool = True
) -> CreatedEndpoint:
    """Add an endpoint, at most ``WEBHOOK_ENDPOINTS_PER_ORGANIZATION`` per organization. The
    organization's row is locked before counting: without it, endpoints created at once each
    count the others not yet committed and all pass the cap together."""
    url = webhook_url_check(url, organization.pk)  # may resolve DNS: before the lock
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        list(
            Organization.objects.select_for_update(no_key=True)
            .filter(pk=organization.pk)
            .values_list("pk")
        )
        _endpoints_cap_check(organization)
        endpoint = WebhookEndpoint.objects.create(
            organization=organization,
            url=url,
            events=_events_check(events),
            description=description,
            enabled=enabled,
            secret_encrypted=secret_encrypt(secret),
            secret_hint=secret[-4:],
        )
    return CreatedEndpoint(endpoint, secret)


def webhook_endpoint_update(
    *, endpoint: WebhookEndpoint, changes: dict[str, Any]
) -> WebhookEndpoint:
    """Change the fields ``changes`` names, on the endpoint's locked row (``row_update``): a
    concurrent change to another field (a dashboard toggle during a ``PATCH``) stays; an endpoint
    deleted since it was read is a 404 (``NotFound``)."""
    changes = dict(changes)
    if "url" in changes:
        changes["url"] = webhook_url_check(changes["url"], endpoint.organization_id)
    if "events" in changes:
        changes["events"] = _events_check(changes["events"])
    gone = NotFound(f"No webhook endpoint {endpoint.pk} in this organization.", param="id")
    fields = ("url", "events", "description", "enabled")
    return row_update(endpoint, changes=changes, fields=fields, gone=gone)


def webhook_endpoint_secret(endpoint: WebhookEndpoint) -> str:
    return secret_decrypt(bytes(endpoint.secret_encrypted))


def requeue_after() -> float:
    """Seconds after an attempt is queued before the sweep queues it again, its task taken for
    lost: the longest an attempt may run (its task's hard limit), the bound the sweep also
    waits before counting a ``sending`` attempt dead."""
    return 4 * float(settings.WEBHOOK_TIMEOUT_SECONDS) + 60


def _event_payload(organization_id: int, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": event_type,
        "created": int(time.time()),
        "organization_id": organization_id,
        "data": data,
    }


def webhook_event_emit(
    organization_id: int, event_type: str, data: dict[str, Any]
) -> list[WebhookDelivery]:
    """Announce ``event_type`` (a ``WebhookEvent`` value) with ``data`` (JSON) to every enabled
    endpoint of the organization subscribed to it; returns the deliveries queued.

    Synchronous and short (one query, one insert); the HTTP happens in Celery after commit. Never
    raises for a delivery problem; an unknown event type is a programming error (ValueError).
    Async code (the gateway) calls it through a background task, never on a request's path."""
    if event_type not in WebhookEvent.values:
        raise ValueError(f"unknown webhook event {event_type!r}")
    endpoints = [
        e
        for e in WebhookEndpoint.objects.filter(organization_id=organization_id, enabled=True)
        if event_type in e.events
    ]
    if not endpoints:
        return []
    payload = _event_payload(organization_id, event_type, data)
    # The first attempts are queued after commit: the retry sweep leaves them to those tasks
    # and queues one only if its task was lost (not queued, or gone with the broker).
    requeue = timezone.now() + timedelta(seconds=requeue_after())
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            organization_id=organization_id,
            endpoint=endpoint,
            event_id=payload["id"],
            event_type=event_type,
            payload=payload,
            next_retry_at=requeue,
        )
        for endpoint in endpoints
    )
    ids = [d.pk for d in deliveries]
    transaction.on_commit(lambda: _queue_first_attempts(ids))
    return deliveries


def _queue_first_attempts(ids: list[int]) -> None:
    from webhooks import tasks

    for delivery_id in ids:
        try:
            tasks.webhook_deliver.delay(delivery_id, 1)
        except Exception:  # the broker is down: the retry sweep sends it later
            logger.exception("webhook delivery %s could not be queued", delivery_id)
