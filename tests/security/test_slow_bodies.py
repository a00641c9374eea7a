"""A ``/v1`` request body that does not arrive within ``GATEWAY_BODY_READ_SECONDS`` of the
request's start is a 408 naming the setting, the connection closed: before, a key could trickle
a byte now and then on as many connections as the worker takes (uvicorn reads bodies without a
deadline), holding every slot of ``limit_concurrency`` and the buffered bytes for ever."""

from __future__ import annotations

import orjson

from tests.routing.world import World
from tests.security.test_request_bodies import exchange, head


def _trickled(world: World, path: str) -> bytes:
    """Send the head and the first bytes of a body declared whole, then nothing: the answer
    (none on the old code: the read timed out)."""
    body = orjson.dumps({"model": "test/gpt", "messages": [{"role": "user", "content": "hi"}]})
    closing = head(path, world.key, len(body)).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
    return exchange(world.gateway_url, closing, [body[:5]])


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
