"""A ``/v1`` request body that does not arrive within ``GATEWAY_BODY_READ_SECONDS`` of the
request's start is a 408 naming the setting, the connection closed: before, a key could trickle
a byte now and then on as many connections as the worker takes (uvicorn reads bodies without a
deadline), holding every slot of ``limit_concurrency`` and the buffered bytes for ever."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import orjson

from tests.routing.world import World


def _trickled(world: World, path: str) -> bytes:
    """Send the head and the first bytes of a body declared whole, then nothing: what comes
    back within 10 s (nothing, on the old code)."""
    address = urlsplit(world.gateway_url)
    body = orjson.dumps({"model": "test/gpt", "messages": [{"role": "user", "content": "hi"}]})
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {address.hostname}\r\n"
        f"Authorization: Bearer {world.key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(head + body[:5])
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
        return answer


def test_a_body_that_stops_arriving_is_refused_with_a_408(world: World, settings) -> None:
    settings.GATEWAY_BODY_READ_SECONDS = 1.0

    answer = _trickled(world, "/v1/chat/completions")

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"GATEWAY_BODY_READ_SECONDS" in answer
    assert b"request_timeout" in answer


def test_an_anthropic_body_that_stops_arriving_is_refused_in_anthropic_shape(
    world: World,
    settings,
) -> None:
    settings.GATEWAY_BODY_READ_SECONDS = 1.0

    answer = _trickled(world, "/v1/messages")

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"type":"error"' in answer.replace(b" ", b"")
