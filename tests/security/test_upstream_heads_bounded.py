"""An answer's head (status line and headers) from a catalog provider is bounded before any of it
is kept: the gateway's lean transport (the platform's providers; tenants' own hosts go through
httpcore) kept every header the parser gave it, and the parser buffered a header line however
long, until the head ended or the first-byte timeout (60 s) passed — 20 MB of ``a:b`` lines
became 260 MB of the worker every organization shares. httpcore's h11 (tenants' hosts, and every
provider behind a proxy) refuses a head past 100 KiB; the lean transport now does too."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from routing.gateway.transport import MAX_HEAD_BYTES
from tests.routing.world import World, base_catalog, endpoint, model, provider
from tests.security.own_host import COMPLETION as OWN_COMPLETION
from tests.security.own_host import ask
from tests.security.raw_upstream import RawUpstream

COMPLETION = orjson.dumps(OWN_COMPLETION)
HEAD_BYTES = 4 * 1024 * 1024  # forty times the bound


def _many_headers() -> bytes:
    line = b"x-padding: " + b"p" * 85 + b"\r\n"  # 100 bytes
    return line * (HEAD_BYTES // len(line))


def _one_endless_header() -> bytes:
    return b"x-padding: " + b"p" * HEAD_BYTES + b"\r\n"


def _chunked(body: bytes, piece: int) -> bytes:
    return b"".join(
        b"%x\r\n%s\r\n" % (len(body[at : at + piece]), body[at : at + piece])
        for at in range(0, len(body), piece)
    )


def _answers_with(
    padding: bytes, *, trailers: bool = False, body: bytes = COMPLETION
) -> Callable[[RawUpstream, socket.socket], None]:
    """Reads the request and answers 200 with ``padding`` among its headers (then ``body``), or
    with ``trailers``, as the trailers of ``body`` chunked in 64 KiB pieces."""

    def handler(server: RawUpstream, connection: socket.socket) -> None:
        server.read_request(connection)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        answer = head + padding + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        if trailers:
            chunks = _chunked(body, 64 * 1024) + b"0\r\n%s\r\n" % padding
            answer = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks
        try:
            connection.sendall(answer)
        except OSError:
            return  # the gateway stopped reading

    return handler


def _ask(
    world: World,
    raw_servers: list[RawUpstream],
    padding: bytes,
    *,
    trailers: bool = False,
    body: bytes = COMPLETION,
) -> Any:
    server = RawUpstream(_answers_with(padding, trailers=trailers, body=body))
    raw_servers.append(server)
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/raw"))
    data["providers"].append(provider("raw-0", "openai", world.fake_url))
    data["providers"][-1]["base_url"] = f"{server.url()}/v1"
    data["endpoints"].append(endpoint("test/raw", "raw-0", "gpt-4o"))
    world.catalog(data)
    return ask(world, stream=False, model_id="test/raw")


def test_an_ordinary_head_is_read(world: World, raw_servers: list[RawUpstream]) -> None:
    response = _ask(world, raw_servers, b"x-padding: " + b"p" * 8000 + b"\r\n")

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Hello there."


@pytest.mark.parametrize("padding", [_many_headers, _one_endless_header])
def test_a_head_past_the_bound_fails_the_attempt(
    world: World, raw_servers: list[RawUpstream], padding: Callable[[], bytes]
) -> None:
    # Before: every header was kept (the endless one by the parser) and the answer served, 200.
    response = _ask(world, raw_servers, padding())

    assert response.status_code == 502, response.text
    attempts = response.json()["error"]["metadata"]["attempts"]
    assert [a["error"] for a in attempts] == ["connection_error"]
    assert f"the answer's head is larger than {MAX_HEAD_BYTES} bytes" in attempts[0]["detail"]


def test_a_chunked_body_with_trailers_is_read(world: World, raw_servers: list[RawUpstream]) -> None:
    """Trailers are counted from the body's last piece, not from the head: a chunked body ten
    times ``MAX_HEAD_BYTES`` long (JSON padded with spaces, read in several reads) with a trailer
    is served (fails when every byte after the head counts towards the trailers' bound). That a
    trailer is not kept as a header is not seen from here: the answer's headers are read before."""
    long_body = COMPLETION + b" " * (10 * MAX_HEAD_BYTES)

    response = _ask(world, raw_servers, b"x-checksum: abc\r\n", trailers=True, body=long_body)

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Hello there."
    assert "x-checksum" not in response.headers


@pytest.mark.parametrize("padding", [_many_headers, _one_endless_header])
def test_trailers_past_the_bound_fail_the_attempt(
    world: World, raw_servers: list[RawUpstream], padding: Callable[[], bytes]
) -> None:
    # Before: httptools handed the chunked body's trailers to ``on_header`` after the head and
    # every one was kept (4 MiB of them, or one endless line buffered by the parser); 200.
    response = _ask(world, raw_servers, padding(), trailers=True)

    assert response.status_code == 502, response.text
    attempts = response.json()["error"]["metadata"]["attempts"]
    assert [a["error"] for a in attempts] == ["connection_error"]
    assert f"the answer's trailers are larger than {MAX_HEAD_BYTES} bytes" in attempts[0]["detail"]
