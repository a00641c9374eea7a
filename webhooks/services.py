"""Webhook endpoints (create, change, delete) and ``webhook_event_emit``, the one way any app
announces an event to an organization's receivers.

Emitting writes one delivery row per subscribed endpoint and queues their first attempts after
the transaction commits (``deliveries_queue``, which the retry sweep uses too); sending happens in
Celery (``webhooks.delivery``), never in the caller.
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
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Membership, Organization
from routerhub.domain import InvalidInput, NotFound, NotPermitted
from routerhub.row_update import row_update
from routing.egress import base_url_check
from routing.provider_secrets import secret_decrypt, secret_encrypt
from webhooks.models import (
    DeliveryStatus,
    DisabledReason,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

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


def _organization_lock(organization_id: int, *, member: Any) -> None:
    """Lock the organization's row (``FOR NO KEY UPDATE``, as ``membership_remove`` takes it
    first) and refuse if ``member`` (a ``User``; None: no person to check) is no longer one.
    A request authenticated just before its maker's removal waits here for the removal's commit,
    then finds them gone: without it, an endpoint they made or re-pointed after their endpoints
    were disabled would stay theirs, enabled."""
    list(
        Organization.objects.select_for_update(no_key=True)
        .filter(pk=organization_id)
        .values_list("pk")
    )
    if member is None:
        return
    if not Membership.objects.filter(organization_id=organization_id, user_id=member.pk).exists():
        raise NotPermitted(f"{member.email} is no longer a member of this organization.")


def webhook_endpoint_create(
    *,
    organization: Any,
    url: str,
    events: list[str],
    created_by: Any,
    description: str = "",
    enabled: bool = True,
) -> CreatedEndpoint:
    """Add an endpoint, made by ``created_by`` (a ``User``, or None when no person is behind
    the request: then its maker's removal never disables it; required, so no caller forgets
    it), at most ``WEBHOOK_ENDPOINTS_PER_ORGANIZATION`` per organization. The organization's
    row is locked before counting: without it, endpoints created at once each count the others
    not yet committed and all pass the cap together."""
    url = webhook_url_check(url, organization.pk)  # may resolve DNS: before the lock
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        _organization_lock(organization.pk, member=created_by)
        _endpoints_cap_check(organization)
        endpoint = WebhookEndpoint.objects.create(
            organization=organization,
            url=url,
            events=_events_check(events),
            description=description,
            enabled=enabled,
            created_by=created_by,
            secret_encrypted=secret_encrypt(secret),
            secret_hint=secret[-4:],
        )
    return CreatedEndpoint(endpoint, secret)


def webhook_endpoint_update(
    *, endpoint: WebhookEndpoint, changes: dict[str, Any], actor: Any
) -> WebhookEndpoint:
    """Change the fields ``changes`` names, on the endpoint's locked row (``row_update``): a
    concurrent change to another field (a dashboard toggle during a ``PATCH``) stays; an endpoint
    deleted since it was read is a 404 (``NotFound``). ``actor`` (a ``User`` or None) becomes
    its ``created_by`` when this enables a disabled endpoint or changes its URL, or sends any
    ``url`` for one with no recorded creator (made before ``webhooks`` 0004): whoever points the
    organization's events somewhere answers for it, and their removal disables it."""
    changes = dict(changes)
    if "url" in changes:
        changes["url"] = webhook_url_check(changes["url"], endpoint.organization_id)
    if "events" in changes:
        changes["events"] = _events_check(changes["events"])

    def vouch(locked: WebhookEndpoint) -> None:
        enabling = changes.get("enabled") is True and not locked.enabled
        repointing = "url" in changes and (
            changes["url"] != locked.url or locked.created_by_id is None
        )
        if enabling or repointing:
            changes["created_by_id"] = None if actor is None else actor.pk
            changes["disabled_reason"] = ""

    gone = NotFound(f"No webhook endpoint {endpoint.pk} in this organization.", param="id")
    fields = ("url", "events", "description", "enabled", "created_by_id", "disabled_reason")
    with transaction.atomic():  # the organization, then the endpoint: membership_remove's order
        if changes.get("enabled") is True or "url" in changes:
            _organization_lock(endpoint.organization_id, member=actor)
        return row_update(endpoint, changes=changes, fields=fields, check=vouch, gone=gone)


def webhook_endpoints_disable_for_removed(*, organization_id: int, user_id: int) -> int:
    """Disable every endpoint of the organization that ``user_id`` created (``created_by``),
    recording why (``DisabledReason.CREATOR_REMOVED``); how many. Called by
    ``accounts.services.membership_remove`` in its transaction, after its locks (organization,
    membership, keys): a removed admin's URL must not keep receiving the organization's events.
    Rows locked in id order (``FOR NO KEY UPDATE``: a delivery inserted meanwhile only takes a key
    share of its endpoint); nothing locks an endpoint and then those rows. Deliveries already
    pending are not sent: an attempt on a disabled endpoint fails (``webhook_delivery_attempt``)."""
    mine = WebhookEndpoint.objects.filter(organization_id=organization_id, created_by_id=user_id)
    list(mine.select_for_update(no_key=True).order_by("pk").values_list("pk", flat=True))
    return mine.update(enabled=False, disabled_reason=DisabledReason.CREATOR_REMOVED)


def webhook_endpoint_secret(endpoint: WebhookEndpoint) -> str:
    return secret_decrypt(bytes(endpoint.secret_encrypted))


def attempt_dead_after() -> float:
    """Seconds an attempt may stay ``sending`` before the sweep counts it dead (its worker
    stopped): longer than its task's hard time limit, so a live attempt is never counted."""
    return 4 * float(settings.WEBHOOK_TIMEOUT_SECONDS) + 60


def queued_lost_after() -> float:
    """Seconds after an attempt was queued before the sweep takes its task for lost and queues it
    again. A queued task waits in the broker as long as the workers are busy, and Redis itself
    hands again a task whose worker stopped before acknowledging it once ``visibility_timeout``
    has passed (``CELERY_BROKER_TRANSPORT_OPTIONS``; Kombu's default, an hour, for other
    brokers): only a task the broker lost outright is queued again, after that window and an
    attempt's bound. (A broker that refuses the task is seen at once: ``_broker_send``.)"""
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
    return float(options.get("visibility_timeout", 3600)) + attempt_dead_after()


def deliveries_queue(
    due: QuerySet[WebhookDelivery], now: Any, limit: int | None = None
) -> list[tuple[int, int]]:
    """Queue the next attempt of the ``pending`` rows ``due`` selects (at most ``limit``, oldest
    ``next_retry_at`` first, rows another sweep holds skipped); the (id, attempt) pairs queued.
    Each row is marked queued (``queued_at``; the sweep looks at it again only after
    ``queued_lost_after()``) and committed before its task is sent, so a worker that takes the
    task at once finds it marked.

    The row locks are the one guard: the rows are read ``pending`` and locked in one statement
    (a row changed since the statement's snapshot is checked again on its newest version), and
    until the commit no worker can claim or finish them, as its conditional UPDATE waits for the
    lock (``tests/webhooks/test_delivery_sweep_race.py``); so the marking UPDATE needs no second
    status check."""
    with transaction.atomic():
        rows = list(
            due.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.PENDING)
            .order_by("next_retry_at")
            .values_list("pk", "attempts")[:limit]
        )
        WebhookDelivery.objects.filter(pk__in=[pk for pk, _ in rows]).update(
            queued_at=now, next_retry_at=now + timedelta(seconds=queued_lost_after())
        )
    return _broker_send([(pk, attempts + 1) for pk, attempts in rows], now)


def _broker_send(rows: list[tuple[int, int]], now: Any) -> list[tuple[int, int]]:
    """Send each row's task; once the broker refuses one (it is down: each further try would
    wait out Celery's publish retries), that row and the rest are not queued: they are due again
    at ``now``, so the next sweep (every 15 s) tries them."""
    from webhooks import tasks

    for sent, (delivery_id, attempt) in enumerate(rows):
        try:
            tasks.webhook_deliver.delay(delivery_id, attempt)
        except Exception:
            logger.exception("webhook delivery %s could not be queued", delivery_id)
            unsent = [pk for pk, _ in rows[sent:]]
            WebhookDelivery.objects.filter(
                pk__in=unsent, status=DeliveryStatus.PENDING, queued_at=now
            ).update(next_retry_at=now, queued_at=None)
            return rows[:sent]
    return rows


FINISHED = (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED)
PRUNE_BATCH = 1000
PRUNE_BATCHES = 50  # per run (hourly): 50,000 rows an hour at most
PRUNE_SECONDS = 60.0  # no batch starts after this, well inside the task's soft time limit (120 s)
PRUNE_STATEMENT_MS = 20_000  # each of a batch's 2 statements (PostgreSQL): 60 + 2 * 20 s < 120 s


def webhook_deliveries_prune(
    *,
    now: Any = None,
    batch: int = PRUNE_BATCH,
    batches: int = PRUNE_BATCHES,
    seconds: float = PRUNE_SECONDS,
) -> int:
    """Delete finished (succeeded or failed) deliveries created more than
    ``WEBHOOK_DELIVERY_RETENTION_DAYS`` ago, oldest first: at most ``batches`` batches of
    ``batch`` rows, none started after ``seconds``; how many were deleted. A pending or sending
    delivery is never deleted (a finished one never becomes pending again).

    No index holds ``created_at`` alone, so the run walks the id index with a cursor: each batch
    reads the next ``batch`` rows after the last id seen (every statement bounded by the id
    index, never a scan of what remains), deletes the finished old ones among them and stops at
    the first row created after the cutoff. Ids follow creation: ``created_at`` is taken just
    before the INSERT draws its id, so two concurrent inserts can only swap order within those
    milliseconds; a row so swapped past the cutoff is taken by the next hourly run."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_DELIVERY_RETENTION_DAYS)
    deadline, deleted, last = time.monotonic() + seconds, 0, 0
    for _ in range(batches):
        with transaction.atomic():
            _statement_timeout(PRUNE_STATEMENT_MS)
            chunk = list(
                WebhookDelivery.objects.filter(pk__gt=last)
                .order_by("pk")
                .values_list("pk", "status", "created_at")[:batch]
            )
            old = [row for row in chunk if row[2] < cutoff]
            ids = [pk for pk, status, _ in old if status in FINISHED]
            deleted += WebhookDelivery.objects.filter(pk__in=ids).delete()[0] if ids else 0
        if len(old) < batch or time.monotonic() > deadline:
            break
        last = chunk[-1][0]
    return deleted


def _statement_timeout(ms: int) -> None:
    """Cap each further statement of the current transaction at ``ms`` (PostgreSQL; SQLite has
    no such setting): a slow one fails the run, the next run starts over."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = {int(ms)}")


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
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            organization_id=organization_id,
            endpoint=endpoint,
            event_id=payload["id"],
            event_type=event_type,
            payload=payload,
        )
        for endpoint in endpoints
    )
    ids = [d.pk for d in deliveries]
    transaction.on_commit(lambda: _queue_first_attempts(ids))
    return deliveries


def _queue_first_attempts(ids: list[int]) -> None:
    """After the event's commit: the rows are due (``next_retry_at`` their creation), so if this
    never runs the sweep queues them; rows the sweep has queued meanwhile are skipped."""
    due = WebhookDelivery.objects.filter(pk__in=ids, attempts=0, queued_at__isnull=True)
    deliveries_queue(due, timezone.now())
