"""A ``Content-Length`` that is not ASCII digits is a clear 400, an absurdly long one a 413, on
every path that reads it: Django's (``routerhub/body_limits.py``), the gateway's
(``GatewayRequest.body``) and the playground's. Tested at the function level: uvicorn refuses
most such headers before any of them runs, another server might not. ``int`` reads "١٢" as 12 and
raises on "²" (which ``str.isdigit`` accepts) and on more than 4,300 digits: those were 500s."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory

from routerhub.body_limits import declared_body_length, with_body_limits
from routerhub.errors import BadRequest, PayloadTooLarge
from routing.gateway.http import GatewayRequest
from routing.playground import playground_chat

NOT_NUMBERS = ["²", "١٢", "１２", "-1", "+1", "1e3", "0x10", "1 2", "1,000", "", " "]
TOO_LONG = ["9" * 19, "9" * 5000]


def _short_id(value: object) -> str | None:
    """Test ids: a run of thousands of digits named by its length."""
    return f"{len(value)}-digits" if isinstance(value, (str, bytes)) and len(value) > 18 else None


@pytest.mark.parametrize(
    ("value", "length"),
    [(None, None), ("12", 12), (b" 12\t", 12), ("0", 0), ("0" * 30 + "7", 7), ("100", 100)],
)
def test_a_decimal_length_within_the_limit_is_read(value: Any, length: int | None) -> None:
    assert declared_body_length(value, limit=100) == length


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_a_length_that_is_not_ascii_digits_is_a_bad_request(value: str) -> None:
    with pytest.raises(BadRequest, match="Content-Length"):
        declared_body_length(value, limit=100)


@pytest.mark.parametrize("value", [*TOO_LONG, "101"], ids=_short_id)
def test_a_length_over_the_limit_or_too_long_to_read_is_too_large(value: str) -> None:
    with pytest.raises(PayloadTooLarge, match="larger than 100 bytes"):
        declared_body_length(value, limit=100)


def _asgi_call(app: Any, path: str, length: bytes) -> tuple[dict[str, Any], bytes]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-length", length)],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0], sent[1]["body"]


async def _never_reached(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the request reached Django")


@pytest.mark.parametrize(
    ("length", "status"),
    [
        ("²".encode("latin-1"), 400),
        ("١٢".encode(), 400),
        (b"-1", 400),
        *((v.encode(), 413) for v in TOO_LONG),
    ],
    ids=_short_id,
)
def test_django_paths_refuse_a_bad_length_before_django_reads_the_body(
    length: bytes, status: int
) -> None:
    app = with_body_limits(_never_reached)

    start, body = _asgi_call(app, "/api/v1/keys", length)

    assert start["status"] == status
    error = orjson.loads(body)["error"]
    assert error["code"] == status and error["message"]
    start, body = _asgi_call(app, "/dashboard/keys/", length)  # a page: plain text
    assert start["status"] == status and body


@pytest.mark.parametrize(
    ("length", "error"),
    [("²", BadRequest), ("١٢", BadRequest), *((v, PayloadTooLarge) for v in TOO_LONG)],
    ids=_short_id,
)
def test_the_gateway_refuses_a_bad_length_before_reading_the_body(
    length: str, error: type[Exception]
) -> None:
    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent before the body is read")

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"content-length", length.encode("latin-1" if length == "²" else "utf-8"))],
    }
    request = GatewayRequest(scope, receive, send)

    with pytest.raises(error):
        asyncio.run(request.body(limit=100))


@pytest.mark.parametrize(
    ("length", "status"), [("²", 400), ("١٢", 400), *((v, 413) for v in TOO_LONG)], ids=_short_id
)
def test_the_playground_refuses_a_bad_length_before_anything_else(length: str, status: int) -> None:
    request = RequestFactory().post(
        "/dashboard/playground/chat", b"{}", content_type="application/json", CONTENT_LENGTH=length
    )
    request.user = AnonymousUser()

    response = asyncio.run(playground_chat(request))

    assert response.status_code == status
    assert orjson.loads(response.content)["error"]["code"] == status


def test_a_body_declared_small_on_an_upload_path_is_read_no_further_than_the_general_limit(
    settings: Any,
) -> None:
    """A length of at most the general limit skips the upload gate (``accounts.upload_gate``):
    such a body was granted only the general limit. On the old code the reading was still
    capped at the dataset limit, so bytes past the declared length (from a server or proxy that
    does not enforce it) were read, unauthenticated, up to ``DATASET_MAX_BYTES``. Over HTTP the
    servers RouterHub runs behind frame the body by its length, hence the ASGI level here."""
    settings.REQUEST_MAX_BODY_BYTES = 1000
    settings.DATASET_MAX_BYTES = 100_000
    chunks = [b"x" * 500] * 10  # 5,000 bytes after declaring 10
    read: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": chunks.pop(), "more_body": bool(chunks)}

    async def django(scope: Any, receive: Any, send: Any) -> None:
        while (message := await receive())["more_body"]:
            read.append(len(message["body"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read"})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/v1/datasets",
             "headers": [(b"content-length", b"10")]}  # fmt: skip
    asyncio.run(with_body_limits(django)(scope, receive, send))

    assert sent[0]["status"] == 413
    assert "larger than 1000 bytes" in orjson.loads(sent[1]["body"])["error"]["message"]
    assert sum(read) <= 1000
