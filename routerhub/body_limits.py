"""Request body caps for every path Django serves (``/v1`` is the gateway's, with its own limit).

Django's ASGI handler reads a whole request body before any view or middleware runs, spilling it
to a temporary file past ``FILE_UPLOAD_MAX_MEMORY_SIZE``: without a cap in front of it, anyone
could make the server write gigabytes to disk with one unauthenticated POST. This ASGI middleware
refuses with 413 a body whose declared ``Content-Length`` is over the path's limit, before reading
any of it, and stops reading a body without one (chunked) as soon as the bytes received pass it.

The limit is ``REQUEST_MAX_BODY_BYTES``, except on the dataset upload paths (the API's, the
dashboard's and Not Diamond's ``trainCustomRouter``), which take a file of up to
``DATASET_MAX_BYTES`` plus the rest of the form.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from django.conf import settings
from django.urls import reverse

from routerhub.errors import PayloadTooLarge
from routerhub.middleware import API_PREFIXES

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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
    return general


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return None


async def _refuse(scope: Scope, send: Send, limit: int) -> None:
    message = f"The request body is larger than {limit} bytes, the limit for {scope['path']}."
    if scope["path"].startswith(API_PREFIXES):
        error = PayloadTooLarge(message)
        body, content_type = orjson.dumps(error.body()), b"application/json"
    else:
        body, content_type = message.encode(), b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            # The rest of the body is never read: the connection cannot carry another request.
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def with_body_limits(app: ASGIApp) -> ASGIApp:
    """Wrap Django's ASGI application so no request body over its limit reaches it."""

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        limit = body_limit(scope["method"], scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, send, limit)
            return
        received = 0
        response_started = False

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
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
            await _refuse(scope, send, limit)

    return application
