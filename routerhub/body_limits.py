"""Request body caps for every path Django serves (``/v1`` is the gateway's, with its own limit).

Django's ASGI handler reads a whole request body before any view or middleware runs, spilling it
to a temporary file past ``FILE_UPLOAD_MAX_MEMORY_SIZE``: without a cap in front of it, anyone
could make the server write gigabytes to disk with one unauthenticated POST. This ASGI middleware
refuses with 413 a body whose declared ``Content-Length`` is over the path's limit, before reading
any of it, and stops reading a body without one (chunked) as soon as the bytes received pass it.
A ``Content-Length`` that is not a decimal number of bytes is refused with 400
(``declared_body_length``, which the gateway and the playground use too).

The limit is ``REQUEST_MAX_BODY_BYTES``, except on the dataset upload paths (the API's, the
dashboard's and Not Diamond's ``trainCustomRouter``), which take a file of up to
``DATASET_MAX_BYTES`` plus the rest of the form (only for a caller who may upload: an admin's
management key or session, ``accounts.upload_gate``; anyone else is refused from the headers),
and on the UbiOps import
(``POST /api/v1/pipelines/import``), which takes at most ``PIPELINE_IMPORT_MAX_BYTES``.

A body must also keep arriving (``BodyPace``, which the gateway uses too): uvicorn reads one
without a deadline, so an unauthenticated client trickling a byte now and then held a connection
slot for ever. Past the pace it is a 408, the connection closed.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.urls import reverse

from routerhub.errors import ApiError, BadRequest, PayloadTooLarge, RequestTimeout
from routerhub.middleware import API_PREFIXES
from routerhub.text import decimal_number

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
M = TypeVar("M", bound=Mapping[str, Any])  # an ASGI message, as this module or the gateway types it


PIPELINE_IMPORT_MAX_BYTES = 256 * 1024  # a UbiOps pipeline version export

# orjson reads 1024 levels of nesting but writes only 255: a body read deeper than that fails when
# it is written again (the gateway's upstream request and token bound, a pipeline gate's schema
# check, a stored pipeline step sent upstream), a 500. Refused at reading, by the gateway and by
# the API's JSON parser (``routerhub.parsers``), with room under 255 for the envelopes around it.
MAX_JSON_DEPTH = 128
JSON_TOO_DEEP = f"Nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; flatten it (schemas included)."


def nested_deeper_than(raw: bytes | None, data: Any, limit: int) -> bool:
    """Whether ``data`` (read from ``raw``, when given) nests lists and objects more than
    ``limit`` deep. A body with fewer brackets than ``limit`` cannot (counted in C, the gateway's
    common case); else the containers are walked level by level, stopping at ``limit``."""
    if raw is not None and raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    layer = [data] if isinstance(data, dict | list) else []
    for _ in range(limit):
        deeper: list[Any] = []
        for node in layer:
            children = node.values() if isinstance(node, dict) else node
            deeper.extend(child for child in children if isinstance(child, dict | list))
        if not deeper:
            return False
        layer = deeper
    return True


class BodyPace:
    """How long each read of one request body may wait: at most ``REQUEST_BODY_IDLE_SECONDS``
    for the next bytes, and the whole body in by the later of ``REQUEST_BODY_GRACE_SECONDS`` and
    its length (declared, else the most it may be) at ``REQUEST_BODY_MIN_BYTES_PER_SECOND``,
    counted from ``started`` (the request's arrival). Past either, ``RequestTimeout`` (408)."""

    __slots__ = ("_deadline", "_idle")

    def __init__(self, *, expected: int, started: float) -> None:
        rate = float(settings.REQUEST_BODY_MIN_BYTES_PER_SECOND)
        grace = float(settings.REQUEST_BODY_GRACE_SECONDS)
        self._idle = float(settings.REQUEST_BODY_IDLE_SECONDS)
        self._deadline = started + max(grace, expected / rate)

    async def receive(self, receive: Callable[[], Awaitable[M]]) -> M:
        """The next message of the body, or ``RequestTimeout`` when it is too slow to come."""
        left = self._deadline - time.monotonic()
        idle = self._idle <= left
        try:
            async with asyncio.timeout(max(min(self._idle, left), 0.0)):
                return await receive()
        except TimeoutError:
            if idle:
                raise RequestTimeout(
                    f"No bytes of the request body arrived for {self._idle:g} s "
                    "(REQUEST_BODY_IDLE_SECONDS); send it without pauses."
                ) from None
            raise RequestTimeout(
                "The request body arrived too slowly: slower on average than "
                f"{settings.REQUEST_BODY_MIN_BYTES_PER_SECOND:g} bytes/s "
                "(REQUEST_BODY_MIN_BYTES_PER_SECOND) past REQUEST_BODY_GRACE_SECONDS "
                f"({settings.REQUEST_BODY_GRACE_SECONDS:g} s)."
            ) from None


class _BodyTooLarge(Exception):
    """Raised from ``receive`` into Django's body reader: the client sent more than the limit."""


@functools.cache
def _dataset_upload_paths() -> frozenset[str]:
    return frozenset(
        {
            reverse("api-datasets"),
            reverse("training-datasets"),
            reverse("notdiamond-train-custom-router"),  # Not Diamond's CustomRouter.fit upload
        }
    )


def body_limit(method: str, path: str) -> int:
    """The most bytes a request to ``path`` may carry."""
    general = int(settings.REQUEST_MAX_BODY_BYTES)
    if method == "POST" and path in _dataset_upload_paths():
        return int(settings.DATASET_MAX_BYTES) + general  # the file, and the form's other fields
    if method == "POST" and path == _pipeline_import_path():
        return min(general, PIPELINE_IMPORT_MAX_BYTES)
    return general


@functools.cache
def _pipeline_import_path() -> str:
    return reverse("api-pipeline-import")


def declared_body_length(value: str | bytes | None, *, limit: int) -> int | None:
    """A request's ``Content-Length``, checked before any of the body is read: None without
    one; ``BadRequest`` when it is not ASCII digits (``int`` reads "١٢" as 12 and fails on "²",
    a 500 in Django's body reader); ``PayloadTooLarge`` over ``limit``, which a run of digits
    longer than ``decimal_number`` reads always is (``int`` fails past 4,300 digits)."""
    if value is None:
        return None
    text = (value.decode("latin-1") if isinstance(value, bytes) else value).strip(" \t")
    if not (text.isascii() and text.isdecimal()):
        raise BadRequest("The Content-Length header is not a number of bytes.")
    length = decimal_number(text.lstrip("0") or "0")
    if length is None or length > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    return length


def _content_length(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            return bytes(value)
    return None


def _too_large(scope: Scope, limit: int) -> PayloadTooLarge:
    path = scope["path"]
    return PayloadTooLarge(f"The request body is larger than {limit} bytes, the limit for {path}.")


async def _refuse(scope: Scope, send: Send, error: ApiError) -> None:
    if scope["path"].startswith(API_PREFIXES):
        body, content_type = orjson.dumps(error.body()), b"application/json"
    else:
        body, content_type = error.message.encode(), b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            # The rest of the body is never read: the connection cannot carry another request.
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _gated(declared: int | None, limit: int) -> bool:
    """Whether the body may pass the general limit, so ``accounts.upload_gate`` is asked first:
    a dataset-sized limit and a body declared past the general one, or of no declared length."""
    general = int(settings.REQUEST_MAX_BODY_BYTES)
    return limit > general and (declared is None or declared > general)


def _read_limit(declared: int | None, limit: int) -> int:
    """The most bytes read of the body: the path's limit when the gate granted it (or it is no
    more than the general one), else the general limit — a body declared small on an upload
    path was never granted more, whatever the bytes that follow say."""
    if _gated(declared, limit):
        return limit
    return min(limit, int(settings.REQUEST_MAX_BODY_BYTES))


async def _upload_refusal(scope: Scope, declared: int | None, limit: int) -> ApiError | None:
    """A dataset-sized body (past the general limit, or of no declared length on a path that
    takes one) is read only for a caller who may upload it (``accounts.upload_gate``): anyone
    else is refused from the headers, before Django spools a byte of it to disk."""
    if not _gated(declared, limit):
        return None
    from accounts.upload_gate import upload_refusal  # needs the apps loaded

    return await sync_to_async(upload_refusal, thread_sensitive=False)(scope["headers"])


def with_body_limits(app: ASGIApp) -> ASGIApp:
    """Wrap Django's ASGI application so no request body over its limit reaches it."""

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.monotonic()
        limit = body_limit(scope["method"], scope["path"])
        try:
            declared = declared_body_length(_content_length(scope), limit=limit)
        except PayloadTooLarge:
            await _refuse(scope, send, _too_large(scope, limit))
            return
        except ApiError as error:  # not a number of bytes
            await _refuse(scope, send, error)
            return
        refusal = await _upload_refusal(scope, declared, limit)
        if refusal is not None:
            await _refuse(scope, send, refusal)
            return
        limit = _read_limit(declared, limit)
        pace = BodyPace(expected=limit if declared is None else declared, started=started)
        received = 0
        body_done = False
        response_started = False

        async def receive_limited() -> Message:
            nonlocal received, body_done
            if body_done:  # Django's disconnect listener, for as long as the response takes
                return await receive()
            message = await pace.receive(receive)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
                body_done = not message.get("more_body")
            return message

        async def send_tracked(message: Message) -> None:
            nonlocal response_started
            response_started = True
            await send(message)

        try:
            await app(scope, receive_limited, send_tracked)
        except _BodyTooLarge:
            if response_started:  # a view that answered before reading everything: nothing to add
                return
            await _refuse(scope, send, _too_large(scope, limit))
        except RequestTimeout as error:
            if not response_started:
                await _refuse(scope, send, error)

    return application
