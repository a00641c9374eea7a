"""Webhooks (``/api/v1/webhooks``, admins): receiver URLs subscribed to events, their delivery
log, and ``verify_webhook_signature`` for the receiving side."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, TypedDict, cast

from routerhub_client._async_account import AsyncResource
from routerhub_client._http import clean_params
from routerhub_client._sync_account import SyncResource

WebhookEvent = Literal[
    "training.finished",
    "training.failed",
    "router.promoted",
    "router.drift",
    "budget.threshold",
    "credits.auto_topup_capped",
]


class WebhookEndpoint(TypedDict, total=False):
    id: int
    url: str
    events: list[WebhookEvent]
    description: str
    enabled: bool
    disabled_reason: Literal["creator_removed"] | None  # why RouterHub disabled it
    created_by: str | None  # email of who answers for it; their removal disables it
    secret_hint: str
    created_at: str
    secret: str  # only in the answer to ``create``: store it then


class WebhookDelivery(TypedDict, total=False):
    id: int
    endpoint: int
    event_id: str
    event_type: WebhookEvent
    status: Literal["pending", "sending", "succeeded", "failed"]
    attempts: int
    response_code: int | None
    response_excerpt: str
    error: str
    latency_ms: float | None
    next_retry_at: str | None  # null while an attempt is queued (queued_at)
    queued_at: str | None
    possibly_lost: bool  # queued longer than an attempt lasts, not started: busy or lost
    last_attempt_at: str | None
    created_at: str
    payload: dict[str, Any]


def verify_webhook_signature(
    secret: str, header: str, body: bytes, *, tolerance: int = 300, now: float | None = None
) -> bool:
    """Whether ``header`` (``RouterHub-Signature: t=…,v1=…``) signs the raw ``body`` with the
    endpoint's ``secret`` within ``tolerance`` seconds (README "Verifying webhook signatures")."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))


def _endpoint_body(**fields: Any) -> dict[str, Any]:
    return clean_params(fields) or {}


class Webhooks(SyncResource):
    def create(
        self, url: str, events: list[WebhookEvent], *, description: str | None = None
    ) -> WebhookEndpoint:
        """A new endpoint; the answer's ``secret`` is shown this once."""
        body = _endpoint_body(url=url, events=events, description=description)
        return cast(WebhookEndpoint, self._json("POST", "/api/v1/webhooks", json=body))

    def get(self, webhook_id: int) -> WebhookEndpoint:
        return cast(WebhookEndpoint, self._json("GET", f"/api/v1/webhooks/{webhook_id}"))

    def update(
        self,
        webhook_id: int,
        *,
        url: str | None = None,
        events: list[WebhookEvent] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> WebhookEndpoint:
        body = _endpoint_body(url=url, events=events, description=description, enabled=enabled)
        path = f"/api/v1/webhooks/{webhook_id}"
        return cast(WebhookEndpoint, self._json("PATCH", path, json=body))

    def delete(self, webhook_id: int) -> None:
        self._t.request("DELETE", f"/api/v1/webhooks/{webhook_id}")

    def list(self, *, page_size: int | None = None) -> Iterator[WebhookEndpoint]:
        return self._pages("/api/v1/webhooks", {"limit": page_size})

    def deliveries(
        self, webhook_id: int, *, page_size: int | None = None
    ) -> Iterator[WebhookDelivery]:
        """The endpoint's delivery log, newest first."""
        return self._pages(f"/api/v1/webhooks/{webhook_id}/deliveries", {"limit": page_size})


class AsyncWebhooks(AsyncResource):
    async def create(
        self, url: str, events: list[WebhookEvent], *, description: str | None = None
    ) -> WebhookEndpoint:
        """A new endpoint; the answer's ``secret`` is shown this once."""
        body = _endpoint_body(url=url, events=events, description=description)
        return cast(WebhookEndpoint, await self._json("POST", "/api/v1/webhooks", json=body))

    async def get(self, webhook_id: int) -> WebhookEndpoint:
        return cast(WebhookEndpoint, await self._json("GET", f"/api/v1/webhooks/{webhook_id}"))

    async def update(
        self,
        webhook_id: int,
        *,
        url: str | None = None,
        events: list[WebhookEvent] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> WebhookEndpoint:
        body = _endpoint_body(url=url, events=events, description=description, enabled=enabled)
        path = f"/api/v1/webhooks/{webhook_id}"
        return cast(WebhookEndpoint, await self._json("PATCH", path, json=body))

    async def delete(self, webhook_id: int) -> None:
        await self._t.request("DELETE", f"/api/v1/webhooks/{webhook_id}")

    def list(self, *, page_size: int | None = None) -> AsyncIterator[WebhookEndpoint]:
        return self._pages("/api/v1/webhooks", {"limit": page_size})

    def deliveries(
        self, webhook_id: int, *, page_size: int | None = None
    ) -> AsyncIterator[WebhookDelivery]:
        """The endpoint's delivery log, newest first."""
        return self._pages(f"/api/v1/webhooks/{webhook_id}/deliveries", {"limit": page_size})
