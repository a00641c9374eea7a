"""A request body that stops arriving, or arrives too slowly, is a 408 naming the setting, and the
connection is closed: on ``/v1`` and on every path Django serves (``routerhub.body_limits.BodyPace``).

Before, uvicorn read bodies without a deadline: anyone, no key needed on the management API,
could trickle a byte now and then on as many connections as the worker takes, holding every slot
of ``limit_concurrency``. Then the ``/v1`` 408 kept the connection open (uvicorn went on reading
the declared body), only ``/v1`` had a deadline, and a fixed 60 s refused steady slow uploads.
"""

from __future__ import annotations

import select
import socket

import orjson
import pytest

from tests.routing.world import World
from tests.security.test_request_bodies import exchange, head

CHAT = orjson.dumps({"model": "test/gpt", "messages": [{"role": "user", "content": "hi"}]})


def _trickled(world: World, path: str, key: str = "") -> bytes:
    """Send the head and the first bytes of a body declared whole, then nothing: the answer
    (none on the old code: the read timed out)."""
    closing = head(path, key or world.key, len(CHAT))
    closing = closing.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
    return exchange(world.gateway_url, closing, [CHAT[:5]])


def _answer_then_eof(world: World, path: str, key: str = "") -> tuple[bytes, bool]:
    """Send a keep-alive head and 5 bytes of the body, then nothing: what came back, and whether
    the server closed the connection (an empty read) within 10 s."""
    host, port = world.gateway_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head(path, key or world.key, len(CHAT)).encode() + CHAT[:5])
        received = b""
        try:
            while data := sock.recv(65536):
                received += data
        except TimeoutError:
            return received, False
    return received, True


def test_a_body_that_stops_arriving_is_refused_with_a_408(world: World, settings) -> None:
    settings.REQUEST_BODY_IDLE_SECONDS = 1.0

    answer = _trickled(world, "/v1/chat/completions")

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"REQUEST_BODY_IDLE_SECONDS" in answer
    assert b"request_timeout" in answer


def test_an_anthropic_body_that_stops_arriving_is_refused_in_anthropic_shape(
    world: World,
    settings,
) -> None:
    settings.REQUEST_BODY_IDLE_SECONDS = 1.0

    answer = _trickled(world, "/v1/messages")

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"type":"error"' in answer.replace(b" ", b"")


def test_the_408_closes_a_keep_alive_connection(world: World, settings) -> None:
    settings.REQUEST_BODY_IDLE_SECONDS = 1.0

    answer, closed = _answer_then_eof(world, "/v1/chat/completions")

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert closed, "the server kept the connection open after its 408"


def test_the_gateway_413_closes_a_keep_alive_connection(world: World, settings) -> None:
    settings.GATEWAY_MAX_BODY_BYTES = 10
    settings.REQUEST_BODY_IDLE_SECONDS = 20.0

    answer, closed = _answer_then_eof(world, "/v1/chat/completions")

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert closed, "the server kept the connection open after its 413"


def test_a_management_api_body_that_stops_arriving_is_a_408_without_a_key(
    world: World,
    settings,
) -> None:
    settings.REQUEST_BODY_IDLE_SECONDS = 1.0

    answer, closed = _answer_then_eof(world, "/api/v1/keys", key="none")

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    error = orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert error["type"] == "request_timeout"
    assert "REQUEST_BODY_IDLE_SECONDS" in error["message"]
    assert closed


def test_a_dashboard_body_that_stops_arriving_is_a_plain_408(world: World, settings) -> None:
    settings.REQUEST_BODY_IDLE_SECONDS = 1.0

    answer, closed = _answer_then_eof(world, "/accounts/login/", key="none")

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"text/plain" in answer.partition(b"\r\n\r\n")[0]
    assert b"REQUEST_BODY_IDLE_SECONDS" in answer
    assert closed


def _sent_slowly(world: World, body: bytes, pieces: int, pause: float) -> bytes:
    """Send ``body`` in ``pieces`` parts, ``pause`` s apart (the slow client under test), then
    read the answer; an answer arriving during a pause (a refusal) ends the sending at once."""
    host, port = world.gateway_url.removeprefix("http://").split(":")
    size = -(-len(body) // pieces)
    closing = head("/v1/chat/completions", world.key, len(body))
    closing = closing.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(closing.encode())
        for start in range(0, len(body), size):
            if select.select([sock], [], [], pause)[0]:  # answered before the next part
                break
            try:
                sock.sendall(body[start : start + size])
            except OSError:  # refused and closed: the answer is waiting
                break
        received = b""
        while data := sock.recv(65536):
            received += data
    return received


def _padded_chat(size: int) -> bytes:
    padding = "x" * (size - len(CHAT) - 20)
    message = {"role": "user", "content": "hi " + padding}
    return orjson.dumps({"model": "test/gpt", "messages": [message]})


@pytest.mark.parametrize(
    ("rate", "pause", "status"),
    [
        # 8,000 bytes at 1,000 bytes/s may take 8 s: sent in ~2.4 s, past the 1 s grace, answered.
        (1000.0, 0.3, b"200"),
        # At 4,000 bytes/s it must be in by 2 s: each part comes within the idle timeout, yet 408.
        (4000.0, 0.5, b"408"),
    ],
)
def test_a_body_past_the_grace_period_is_held_to_the_minimum_rate(
    world: World,
    settings,
    rate: float,
    pause: float,
    status: bytes,
) -> None:
    settings.REQUEST_BODY_GRACE_SECONDS = 1.0
    settings.REQUEST_BODY_MIN_BYTES_PER_SECOND = rate
    settings.REQUEST_BODY_IDLE_SECONDS = 2.0

    answer = _sent_slowly(world, _padded_chat(8000), pieces=8, pause=pause)

    assert answer.startswith(b"HTTP/1.1 " + status), answer[:300]
    assert (b"REQUEST_BODY_MIN_BYTES_PER_SECOND" in answer) == (status == b"408")
