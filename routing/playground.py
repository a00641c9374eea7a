"""The dashboard playground's endpoint: chat through the gateway with the signed-in session.

``POST /dashboard/playground/chat`` takes the body of ``POST /v1/chat/completions`` and runs it
through the gateway's own request path in this process, so it is authenticated, rate limited,
held, billed and recorded exactly like an API request. It acts with the person's playground key
(one per person and organization, ``ApiKey.is_playground``), created on first use with the
person's role: the key never acts above its creator's current role, stops working when they
leave the organization, shows its spend on the Keys page and can be revoked there (the next
playground request makes a new one). No plaintext of it exists anywhere. Django's CSRF
middleware protects the endpoint like every other dashboard form.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_POST

from accounts.keys import AuthenticatedKey, key_authenticate_digest, key_mint
from accounts.models import ApiKey, KeyScope, Membership
from accounts.tenancy import session_membership
from routerhub.body_limits import declared_body_length
from routerhub.errors import ApiError, error_body
from routing.gateway.app import gateway_app
from routing.gateway.exchange import SESSION_KEY_SCOPE
from routing.gateway.http import Message, Scope

GATEWAY_PATH = "/v1/chat/completions"
_FORWARDED_HEADERS = (b"x-generation-id", b"retry-after", b"x-should-retry", b"x-routerhub-dropped")
_background: set[asyncio.Task[None]] = set()  # running gateway calls (settlement included)
# Messages of an answer waiting for a slow browser at most (each one upstream event or body).
RELAY_MESSAGES_MAX = 16


def playground_key(membership: Membership) -> ApiKey:
    """The person's playground key in this organization, created on first use."""
    key = (
        ApiKey.objects.for_tenant(membership.organization)
        .filter(
            created_by=membership.user,
            is_playground=True,
            revoked_at__isnull=True,
        )
        .first()
    )
    if key is not None:
        return key
    minted = key_mint(scope=KeyScope.INFERENCE)  # its plaintext is dropped here: never usable
    return ApiKey.objects.create(
        organization=membership.organization,
        name=f"Playground · {membership.user.email}"[:120],
        scope=KeyScope.INFERENCE,
        prefix=minted.prefix,
        digest=minted.digest,
        created_by=membership.user,
        created_by_role=membership.role,
        is_playground=True,
        rpm=settings.PLAYGROUND_RPM or None,
    )


def _session_key(request: HttpRequest) -> AuthenticatedKey | JsonResponse:
    """The key this session's playground request acts with, or the error to answer."""
    if not request.user.is_authenticated:
        return _error(401, "unauthorized", "Sign in to use the playground.")
    membership = session_membership(request)
    if not membership:
        return _error(403, "forbidden", "You are not a member of any organization.")
    try:
        return key_authenticate_digest(playground_key(membership).digest)
    except ApiError as exc:
        return JsonResponse(exc.body(), status=exc.status)


def _error(status: int, type_: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(status, type_, message), status=status)


@require_POST
async def playground_chat(request: HttpRequest) -> HttpResponseBase:
    try:
        declared_body_length(
            request.META.get("CONTENT_LENGTH"), limit=settings.REQUEST_MAX_BODY_BYTES
        )
    except ApiError as exc:
        return JsonResponse(exc.body(), status=exc.status)
    if request.content_type != "application/json":
        return _error(415, "unsupported_media_type", "Send the chat request as application/json.")
    key = await sync_to_async(_session_key)(request)
    if isinstance(key, JsonResponse):
        return key
    request_id = getattr(request, "request_id", "")
    return await gateway_call(key, request.body, request_id=request_id)


async def gateway_call(
    key: AuthenticatedKey, body: bytes, *, request_id: str
) -> StreamingHttpResponse:
    """Run ``body`` through the gateway's chat path as ``key``; relay its answer as it comes."""
    outbox = _Outbox()

    async def receive() -> Message:
        if not outbox.body_sent:
            outbox.body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await outbox.gone.wait()  # the browser left, or the answer was relayed in full
        return {"type": "http.disconnect"}

    task = asyncio.ensure_future(gateway_app(_scope(key, body, request_id), receive, outbox.send))
    _background.add(task)
    task.add_done_callback(_background.discard)
    try:
        start = await outbox.queue.get()
    except BaseException:  # cancelled: the browser left before the answer began
        outbox.gone.set()
        raise
    headers = dict(start["headers"])
    response = _Relayed(
        _relay(outbox),
        outbox,
        status=start["status"],
        content_type=headers.get(b"content-type", b"application/json").decode("latin-1"),
    )
    for name in _FORWARDED_HEADERS:
        if name in headers:
            response[name.decode()] = headers[name].decode("latin-1")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


class _Outbox:
    """The gateway's answer on its way to the browser. At most ``RELAY_MESSAGES_MAX`` messages
    wait: the gateway's ``send`` waits for room, so a slow browser slows the upstream read (as
    an ASGI server's ``send`` does for ``/v1``) instead of the answer piling up here. Once the
    browser left (``gone``), sends are dropped: the gateway sees the disconnect and settles."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=RELAY_MESSAGES_MAX)
        self.gone = asyncio.Event()
        self.body_sent = False
        self.loop = asyncio.get_running_loop()

    async def send(self, message: Message) -> None:
        if self.gone.is_set():
            return
        try:
            self.queue.put_nowait(message)
            return
        except asyncio.QueueFull:
            pass
        put = asyncio.ensure_future(self.queue.put(message))
        left = asyncio.ensure_future(self.gone.wait())
        try:
            await asyncio.wait((put, left), return_when=asyncio.FIRST_COMPLETED)
        finally:
            put.cancel()
            left.cancel()

    def leave(self) -> None:
        """From any thread (Django closes responses in one): the browser is gone."""
        with contextlib.suppress(RuntimeError):  # its loop is closed: nothing waits any more
            self.loop.call_soon_threadsafe(self.gone.set)


class _Relayed(StreamingHttpResponse):
    """Closed without being read to its end (the browser left before its first byte), it still
    lets the gateway go on to settle."""

    def __init__(self, content: AsyncIterator[bytes], outbox: _Outbox, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._outbox = outbox

    def close(self) -> None:
        self._outbox.leave()
        super().close()


async def _relay(outbox: _Outbox) -> AsyncIterator[bytes]:
    try:
        while True:
            message = await outbox.queue.get()
            if message.get("body"):
                yield message["body"]
            if not message.get("more_body"):
                return
    finally:
        outbox.gone.set()  # a browser that left mid-stream is billed what was generated, as on /v1


def _scope(key: AuthenticatedKey, body: bytes, request_id: str) -> Scope:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if request_id:
        headers.append((b"x-request-id", request_id.encode("latin-1")))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": GATEWAY_PATH,
        "raw_path": GATEWAY_PATH.encode(),
        "query_string": b"",
        "headers": headers,
        SESSION_KEY_SCOPE: key,
    }
