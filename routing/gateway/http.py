"""Raw ASGI request/response primitives for the gateway (no framework: every microsecond counts)."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from django.conf import settings

from routerhub.body_limits import (
    MAX_JSON_DEPTH,
    BodyPace,
    declared_body_length,
    nested_deeper_than,
)
from routerhub.errors import ApiError, BadRequest, PayloadTooLarge, error_body
from routerhub.middleware import request_id_from
from routing.ingress.anthropic import anthropic_error

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
JSON = dict[str, Any]


class InFlight:
    # Gateway requests this process is still handling, settlement included (it runs after the
    # response is sent): ``routing.gateway.app`` counts them.
    count = 0


class ClientGone(Exception):
    """The client disconnected before its request was read; there is no one to answer."""


def security_headers(scope: Scope, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """What Django's SecurityMiddleware and XFrameOptionsMiddleware add to its answers (README,
    "Security headers"), for every gateway answer, JSON, SSE or error: nosniff (a browser never
    reads an API answer as a page or a script), the Referrer-Policy, the
    Cross-Origin-Opener-Policy, no framing, and HSTS when configured and the request came over
    HTTPS (directly or, behind the proxy, by its header)."""
    out = [*_constant_headers()]
    if settings.SECURE_HSTS_SECONDS and _is_secure(scope, headers):
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        hsts += "; includeSubDomains" if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS else ""
        hsts += "; preload" if settings.SECURE_HSTS_PRELOAD else ""
        out.append((b"strict-transport-security", hsts.encode()))
    return out


@functools.cache
def _constant_headers() -> tuple[tuple[bytes, bytes], ...]:
    """The headers every answer carries, from the settings read at the first answer."""
    out = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY")]
    if settings.SECURE_REFERRER_POLICY:
        out.append((b"referrer-policy", settings.SECURE_REFERRER_POLICY.encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        coop = settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()
        out.append((b"cross-origin-opener-policy", coop))
    return tuple(out)


def _is_secure(scope: Scope, headers: dict[str, str]) -> bool:
    """As Django's ``HttpRequest.is_secure``: the proxy's header when it sent one, else the scheme."""
    proxy = settings.SECURE_PROXY_SSL_HEADER  # ("HTTP_X_FORWARDED_PROTO", "https")
    if proxy:
        value = headers.get(proxy[0].removeprefix("HTTP_").replace("_", "-").lower())
        if value is not None:
            return value.split(",", 1)[0].strip() == proxy[1]
    return scope.get("scheme") == "https"


class GatewayRequest:
    """One HTTP exchange: the parsed request line and headers, and the ways to answer it."""

    __slots__ = (
        "_receive",
        "_send",
        "closing",
        "headers",
        "method",
        "path",
        "request_id",
        "response_complete",
        "response_started",
        "scope",
        "started",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
        }
        self.request_id = request_id_from(self.headers.get("x-request-id"))
        self.response_started = False
        self.response_complete = False
        self.closing = False  # the body was refused unread: the answer closes the connection
        self.started = time.monotonic()

    def relayed(self, rewrite: Callable[[Send], Send]) -> GatewayRequest:
        """This exchange, answered through ``rewrite(send)``: for an endpoint that serves another's
        responses in its own format (``/v1/completions``). Read the body first."""

        async def send(message: Message) -> None:
            # This exchange's flags tell the app whether an error can still be answered.
            if message["type"] == "http.response.start":
                self.response_started = True
            elif not message.get("more_body"):
                self.response_complete = True
            await self._send(message)

        other = GatewayRequest(self.scope, self._receive, rewrite(send))
        other.request_id, other.started = self.request_id, self.started
        return other

    async def body(self, *, limit: int | None = None) -> bytes:
        """The whole body, refused with 413 past ``limit`` (default ``GATEWAY_MAX_BODY_BYTES``)
        before more of it is read, and with 408 when it arrives too slowly (``BodyPace``)."""
        limit = settings.GATEWAY_MAX_BODY_BYTES if limit is None else limit
        try:
            declared = declared_body_length(self.headers.get("content-length"), limit=limit)
            expected = limit if declared is None else declared
            return await self._body_read(limit, BodyPace(expected=expected, started=self.started))
        except ApiError:
            # What is left of the body is never read: kept open, uvicorn would go on reading it
            # (a byte now and then held the connection slot for ever) before the next request.
            self.closing = True
            raise

    async def _body_read(self, limit: int, pace: BodyPace) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await pace.receive(self._receive)
            if message["type"] == "http.disconnect":
                raise ClientGone("the client went away while sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def json(self) -> JSON:
        raw = await self.body()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"The body is not valid JSON: {exc}.") from None
        if not isinstance(data, dict):
            raise BadRequest("The body must be a JSON object.")
        if nested_deeper_than(raw, data, MAX_JSON_DEPTH):
            raise BadRequest(
                f"The body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; "
                "flatten it (tool and response schemas included)."
            )
        return data

    async def wait_disconnect(self) -> None:
        """Return when the client goes away (call only after the body has been read)."""
        while (await self._receive())["type"] != "http.disconnect":
            pass

    def _headers(
        self, content_type: bytes, extra: dict[str, str] | None
    ) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", content_type), (b"x-request-id", self.request_id.encode())]
        if self.path.startswith("/v1/messages"):  # the anthropic SDK reads request-id
            headers.append((b"request-id", self.request_id.encode()))
        for name, value in (extra or {}).items():
            headers.append((name.lower().encode(), value.encode()))
        headers += security_headers(self.scope, self.headers)
        if self.closing:
            headers.append((b"connection", b"close"))
        return headers

    async def respond(
        self,
        status: int,
        body: bytes,
        *,
        headers: dict[str, str] | None = None,
        content_type: bytes = b"application/json",
    ) -> None:
        self.response_started = True
        out = self._headers(content_type, headers)
        out.append((b"content-length", str(len(body)).encode()))
        await self._send({"type": "http.response.start", "status": status, "headers": out})
        self.response_complete = True
        await self._send({"type": "http.response.body", "body": body})

    async def respond_json(
        self, status: int, data: Any, *, headers: dict[str, str] | None = None
    ) -> None:
        await self.respond(status, orjson.dumps(data), headers=headers)

    async def respond_error(self, error: ApiError, *, anthropic: bool = False) -> None:
        body = error.body()
        if anthropic:
            body = anthropic_error(body, self.request_id)
        await self.respond_json(error.status, body, headers=error.headers)

    async def start_stream(self, headers: dict[str, str] | None = None) -> None:
        self.response_started = True
        out = self._headers(b"text/event-stream; charset=utf-8", headers)
        out += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        await self._send({"type": "http.response.start", "status": 200, "headers": out})

    async def write(self, data: bytes) -> None:
        if data:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self) -> None:
        self.response_complete = True
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})


class RewritingSend:
    """An ASGI send that rewrites a 200 answer on its way out, for ``GatewayRequest.relayed``:
    a JSON body through ``whole`` (its ``content-length`` recomputed), each write of an event
    stream through ``events``; errors, which share one format, pass through untouched.
    ``flush``, if given, is awaited after each rewrite and before its bytes are sent (what a
    rewrite decided to write somewhere lands before the client can act on the answer)."""

    def __init__(
        self,
        send: Send,
        whole: Callable[[JSON], JSON],
        events: Callable[[bytes], bytes],
        flush: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._send = send
        self._whole = whole
        self._events = events
        self._flush = flush
        self._held: Message | None = None  # a JSON answer's start: its length changes
        self._streaming = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            content_type = dict(message["headers"]).get(b"content-type", b"")
            if message["status"] != 200:
                await self._send(message)
            elif content_type.startswith(b"text/event-stream"):
                self._streaming = True
                await self._send(message)
            else:
                self._held = message
            return
        if self._held is not None:
            body = orjson.dumps(self._whole(orjson.loads(message["body"])))
            if self._flush is not None:
                await self._flush()
            headers = [(k, v) for k, v in self._held["headers"] if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await self._send(self._held | {"headers": headers})
            self._held = None
            await self._send(message | {"body": body})
            return
        if self._streaming and message.get("body"):
            message = message | {"body": self._events(message["body"])}
            if self._flush is not None:
                await self._flush()
        await self._send(message)


def plain_error(status: int, type_: str, message: str) -> bytes:
    return orjson.dumps(error_body(status, type_, message))
