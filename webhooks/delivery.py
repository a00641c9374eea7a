"""Sending one delivery attempt, and the sweep that retries due ones.

An attempt is claimed with a conditional UPDATE (``pending`` and the attempt number the task was
queued for → ``sending``), so a task delivered twice sends once. Outcomes: a 2xx succeeds; a 5xx,
408, 429, timeout or connection error is retried after ``WEBHOOK_RETRY_BASE_SECONDS · 2^(n-1)``
(at most ``WEBHOOK_RETRY_MAX_DELAY_SECONDS``) until ``WEBHOOK_MAX_ATTEMPTS``; anything else (a 4xx,
a redirect, a refused private address) fails for good. Retries are not Celery countdowns: the
beat sweep (``webhook_deliveries_retry_due``) queues rows whose ``next_retry_at`` has come, so a
lost task or a restarted broker delays a retry instead of dropping it. A queued attempt is marked
(``queued_at``) and left to its task however long it waits in the broker for a worker: the
sweep queues it again only after ``queued_lost_after()`` (the broker's own redelivery window,
an hour by default), or at once when the broker refused it. An attempt ends within
``attempt_bound()`` however slowly the receiver answers, and one whose worker died (still
``sending`` after ``attempt_dead_after()``) counts as failed and is queued again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from routing.egress import public_http_client_sync
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import attempt_dead_after, deliveries_queue, webhook_endpoint_secret
from webhooks.signing import SIGNATURE_HEADER, signature_header

logger = logging.getLogger(__name__)

RETRYABLE_CODES = frozenset({408, 429})
SWEEP_BATCH = 500


@dataclass(frozen=True)
class Outcome:
    code: int | None
    excerpt: str
    error: str
    latency_ms: float

    @property
    def succeeded(self) -> bool:
        return self.code is not None and 200 <= self.code < 300

    @property
    def retryable(self) -> bool:
        if self.code is None:
            return not self.error.startswith("refused")
        return self.code >= 500 or self.code in RETRYABLE_CODES


def retry_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    base = settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
    return float(min(base, settings.WEBHOOK_RETRY_MAX_DELAY_SECONDS))


def _claim(delivery_id: int, attempt: int) -> bool:
    return bool(
        WebhookDelivery.objects.filter(
            pk=delivery_id, status=DeliveryStatus.PENDING, attempts=attempt - 1
        ).update(
            status=DeliveryStatus.SENDING,
            attempts=F("attempts") + 1,
            last_attempt_at=timezone.now(),
            queued_at=None,
        )
    )


def _read_bounded(response: httpx.Response) -> bytes:
    """At most WEBHOOK_RESPONSE_MAX_BYTES of the answer's body, which is only for the log: once
    the status line and headers are in, the status is the outcome, and whatever ends the body
    early (the attempt's bound, a read timeout, a dropped connection) cuts the excerpt there."""
    limit, kept = settings.WEBHOOK_RESPONSE_MAX_BYTES, b""
    try:
        for chunk in response.iter_raw():
            kept += chunk[: limit - len(kept)]
            if len(kept) >= limit:
                break
    except httpx.TransportError:
        pass
    return kept


def attempt_bound() -> float:
    """Seconds one attempt may take, connection to last byte read, however the receiver
    answers (each connect, write and read also within ``WEBHOOK_TIMEOUT_SECONDS``)."""
    return 3 * float(settings.WEBHOOK_TIMEOUT_SECONDS)


def _send(delivery: WebhookDelivery) -> Outcome:
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "RouterHub-Webhooks/1",
        "RouterHub-Event": delivery.event_type,
        "RouterHub-Event-Id": delivery.event_id,
        "RouterHub-Delivery": str(delivery.pk),
        SIGNATURE_HEADER: signature_header(
            secret=webhook_endpoint_secret(delivery.endpoint), body=body
        ),
    }
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    started = time.monotonic()
    client = public_http_client_sync(
        allow_private=settings.WEBHOOK_ALLOW_PRIVATE_URLS,
        timeout=timeout,
        total=attempt_bound(),
        tenant=delivery.endpoint.organization_id,  # one unfinished name lookup per organization
    )
    try:
        with client.stream("POST", delivery.endpoint.url, content=body, headers=headers) as r:
            excerpt = _read_bounded(r)
            code = r.status_code
    except httpx.HTTPError as exc:
        error = str(exc) or type(exc).__name__
        return Outcome(None, "", error[:300], (time.monotonic() - started) * 1000)
    finally:
        client.close()
    # PostgreSQL text cannot hold NUL: a receiver's answer with one must not break the log.
    text = excerpt.decode("utf-8", "replace").replace("\x00", "")
    return Outcome(code, text, "", (time.monotonic() - started) * 1000)


def _record(delivery_id: int, attempt: int, outcome: Outcome, *, final: bool = False) -> str | None:
    """Write attempt number ``attempt``'s outcome, unless the row has moved on (the sweep ended
    the attempt as dead, and maybe a later attempt is under way: a late answer is not its);
    the status written, or None when nothing was."""
    if outcome.succeeded:
        status, next_retry = DeliveryStatus.SUCCEEDED, None
    elif outcome.retryable and not final and attempt < settings.WEBHOOK_MAX_ATTEMPTS:
        status = DeliveryStatus.PENDING
        next_retry = timezone.now() + timedelta(seconds=retry_delay(attempt))
    else:
        status, next_retry = DeliveryStatus.FAILED, None
    mine = WebhookDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.SENDING, attempts=attempt
    )
    written = mine.update(
        status=status,
        next_retry_at=next_retry,
        response_code=outcome.code,
        response_excerpt=outcome.excerpt[:1024],
        error=outcome.error,
        latency_ms=round(outcome.latency_ms, 1),
    )
    return str(status) if written else None


def webhook_delivery_attempt(*, delivery_id: int, attempt: int) -> str | None:
    """Make attempt number ``attempt`` of a delivery; its new status, or None when the attempt
    was not this call's to make (already made, or the delivery is done)."""
    if not _claim(delivery_id, attempt):
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    if not delivery.endpoint.enabled:
        outcome = Outcome(None, "", "the endpoint was disabled", 0.0)
        return _record(delivery_id, attempt, outcome, final=True)
    outcome = _send(delivery)
    if not outcome.succeeded:
        # The URL and the answer's status only: never the signature or the payload.
        logger.info(
            "webhook delivery %s attempt %s: %s",
            delivery_id,
            attempt,
            outcome.code or outcome.error,
        )
    return _record(delivery_id, attempt, outcome)


def _stuck_attempts_end(now: datetime) -> None:
    """An attempt still ``sending`` long past its bound lost its worker (a hard time limit, a
    killed process): it counts as a failed attempt, retried now unless it was the last, so a
    receiver that kills every attempt is not sent to forever."""
    stuck = WebhookDelivery.objects.filter(
        status=DeliveryStatus.SENDING,
        last_attempt_at__lt=now - timedelta(seconds=attempt_dead_after()),
    )
    error = "the attempt did not finish (its worker stopped)"
    stuck.filter(attempts__gte=settings.WEBHOOK_MAX_ATTEMPTS).update(
        status=DeliveryStatus.FAILED, next_retry_at=None, error=error
    )
    stuck.update(status=DeliveryStatus.PENDING, next_retry_at=now, error=error)


def webhook_deliveries_retry_due(*, now: datetime | None = None) -> list[tuple[int, int]]:
    """Queue the pending deliveries whose retry time has come (after ending, as failed attempts,
    those whose worker died mid-send); returns the (delivery id, attempt) pairs queued."""
    now = now or timezone.now()
    _stuck_attempts_end(now)
    due = WebhookDelivery.objects.filter(next_retry_at__lte=now)
    return deliveries_queue(due, now, SWEEP_BATCH)
