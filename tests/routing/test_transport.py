"""The gateway's lean HTTP/1.1 transport under httpx: keep-alive, framing, faults, timeouts, limits.

Each test runs a scripted asyncio server on a free local port; what the server sends is exactly
what the transport has to cope with (a reused connection closed by the server, a body cut short,
a server that never answers).
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import types
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from routing.gateway.transport import LeanTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + (await reader.readexactly(length) if length else b"")


def ok(body: bytes, *extra: bytes) -> bytes:
    headers = b"".join(h + b"\r\n" for h in extra)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), headers, body)


def run(handler: Handler, test: Callable[[str, dict[str, Any]], Awaitable[None]]) -> dict[str, Any]:
    """Serve ``handler`` and run ``test(base_url, stats)``; returns the server's stats."""
    stats: dict[str, Any] = {"connections": 0, "requests": []}

    async def main() -> None:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stats["connections"] += 1
            try:
                await handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            await test(f"http://127.0.0.1:{port}", stats)

    asyncio.run(main())
    return stats


def client(**options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=LeanTransport(**options), timeout=httpx.Timeout(2.0))


def test_a_connection_is_kept_alive_and_reused_for_later_requests() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            writer.write(ok(b'{"echo": %d}' % len(request)))
            await writer.drain()

    async def test(url: str, stats: dict[str, Any]) -> None:
        async with client() as http:
            answers = [await http.post(f"{url}/v1/x", content=b"a" * n) for n in (1, 50, 5000)]
        assert [r.status_code for r in answers] == [200, 200, 200]
        assert answers[2].json()["echo"] > 5000  # the whole body reached the server

    assert run(handler, test)["connections"] == 1


def test_a_kept_alive_connection_the_server_closed_is_replaced_transparently() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"first"))  # then close, as a server whose keep-alive expired does
        await writer.drain()

    async def test(url: str, stats: dict[str, Any]) -> None:
        async with client() as http:
            assert (await http.post(url, content=b"1")).text == "first"
            await asyncio.sleep(0)  # let the close reach the client... or not: both must work
            assert (await http.post(url, content=b"2")).text == "first"

    assert run(handler, test)["connections"] == 2


def test_a_dead_reused_connection_unsays_the_send_before_the_request_waits_again() -> None:
    from routing.gateway.exchange import sent_trace

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"answer"))
        await writer.drain()
        await read_request(reader)  # the second request on this connection: closed unanswered

    async def test(url: str, stats: dict[str, Any]) -> None:
        ex: Any = types.SimpleNamespace(sending=None)
        billing_trace = sent_trace(ex, "the candidate")["trace"]
        seen: list[tuple[str, Any]] = []

        async def trace(event: str, info: dict[str, Any]) -> None:
            await billing_trace(event, info)
            seen.append((event.partition(".")[2], ex.sending))

        async with client() as http:
            assert (await http.post(url, content=b"1")).text == "answer"
            second = await http.post(url, content=b"2", extensions={"trace": trace})
        assert second.text == "answer"
        assert seen == [
            ("send_request_body.complete", "the candidate"),  # on the dead connection
            ("send_request_body.failed", None),  # nothing to bill while a connection is found
            ("send_request_body.complete", "the candidate"),
            ("receive_response_headers.complete", "the candidate"),
        ]

    assert run(handler, test)["connections"] == 2


def test_a_body_cut_short_raises_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()

    async def test(url: str, stats: dict[str, Any]) -> None:
        async with client() as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.post(url, content=b"x")

    run(handler, test)


def test_a_chunked_stream_arrives_piece_by_piece_and_ends_cleanly() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release.wait()  # the second chunk only after the client saw the first
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()
        await read_request(reader)
        writer.write(ok(b"again"))
        await writer.drain()

    async def test(url: str, stats: dict[str, Any]) -> None:
        async with client() as http:
            async with http.stream("POST", url, content=b"x") as response:
                pieces = []
                async for piece in response.aiter_raw():
                    pieces.append(piece)
                    release.set()
            assert pieces == [b"first", b"second"]
            assert (await http.post(url, content=b"y")).text == "again"

    assert run(handler, test)["connections"] == 1


def test_a_silent_server_raises_a_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async def test(url: str, stats: dict[str, Any]) -> None:
        async with client() as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post(url, content=b"x", timeout=httpx.Timeout(2.0, read=0.2))

    run(handler, test)


def test_a_refused_connection_raises_a_connect_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise AssertionError("never connected")

    async def test(url: str, stats: dict[str, Any]) -> None:
        async with client() as http:
            with pytest.raises(httpx.ConnectError):
                await http.post("http://127.0.0.1:1/v1", content=b"x")

    run(handler, test)


def test_gzip_bodies_are_decoded_and_headers_reach_httpx() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(gzip.compress(b"hello " * 100), b"Content-Encoding: gzip", b"X-Id: 7"))
        await writer.drain()

    async def test(url: str, stats: dict[str, Any]) -> None:
        async with client() as http:
            response = await http.post(url, content=b"x")
        assert response.text == "hello " * 100
        assert response.headers["x-id"] == "7"

    run(handler, test)


def test_requests_beyond_the_connection_limit_wait_for_a_free_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(0.01)
            writer.write(ok(b"done"))
            await writer.drain()

    async def test(url: str, stats: dict[str, Any]) -> None:
        async with client(max_connections=2) as http:
            answers = await asyncio.gather(*(http.post(url, content=b"x") for _ in range(10)))
        assert [a.text for a in answers] == ["done"] * 10

    assert run(handler, test)["connections"] == 2


def _garbage_after(
    action: Callable[[], Awaitable[None]], url: str
) -> Callable[[], Awaitable[list[str]]]:
    """The httpx objects ``action``'s requests to ``url`` leave in reference cycles (only the
    garbage collector would free them: what made young collections come every few hundred
    requests, issue 21).

    The collector is process-wide: in a combined run, another thread (a live server's client,
    an SDK's) leaves its own httpx garbage in the same collection, and an earlier test's garbage
    may be freed only by a second collection (a finalizer's work). So the garbage is first
    collected until nothing is left, and garbage that provably is another's does not count: what
    is connected, either way, to a request or URL for another port only (``_garbage_of_port``).
    Anything else counts, a cycle of headers alone too."""

    async def run_it() -> list[str]:
        while gc.collect():
            pass
        gc.garbage.clear()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            await action()
            gc.collect()
            return _garbage_of_port(gc.garbage, httpx.URL(url).port)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()

    return run_it


def _garbage_of_port(garbage: list[Any], port: int | None) -> list[str]:
    """The httpx objects among ``garbage`` except those in a group (garbage referring to
    garbage, either way) that holds or refers to an ``httpx.Request`` or ``httpx.URL`` for
    another port and none for ``port``."""
    group = list(range(len(garbage)))  # union-find over the garbage's references

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    index = {id(o): i for i, o in enumerate(garbage)}
    ports: dict[int, set[int | None]] = {}
    for i, o in enumerate(garbage):
        for referent in [o, *gc.get_referents(o)]:
            j = index.get(id(referent))
            if j is not None:
                group[root(j)] = root(i)
            if isinstance(referent, httpx.Request):
                referent = referent.url
            if isinstance(referent, httpx.URL):
                ports.setdefault(i, set()).add(referent.port)
    seen: dict[int, set[int | None]] = {}
    for i, found in ports.items():
        seen.setdefault(root(i), set()).update(found)
    others = {r for r, found in seen.items() if port not in found}
    return sorted(
        type(o).__qualname__
        for i, o in enumerate(garbage)
        if root(i) not in others and type(o).__module__.startswith("httpx")
    )


class _Held:
    """Stands for the Exchange a gateway request's trace holds (its body, with images)."""

    body = b"an image"
    event = ""


def test_the_gateway_client_leaves_no_reference_cycle_behind_an_answer() -> None:
    from routing.gateway.upstream import _client_create, response_release

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(ok(b'{"choices": []}'))
            await writer.drain()

    async def test(url: str, stats: dict[str, Any]) -> None:
        http = _client_create()

        async def whole() -> None:
            response = await http.post(f"{url}/v1/x", content=b"{}")
            assert response.json() == {"choices": []}  # read as before

        async def streamed() -> None:
            response = await http.send(http.build_request("POST", f"{url}/v1/x"), stream=True)
            assert b"".join([c async for c in response.aiter_bytes()]) == b'{"choices": []}'
            await response.aclose()
            response_release(response)

        kept: list[weakref.ref[Any]] = []

        async def traced() -> None:  # as the gateway sends: a trace holding its Exchange
            exchange = _Held()
            kept.append(weakref.ref(exchange))

            async def trace(event: str, info: dict[str, Any]) -> None:
                exchange.event = event

            response = await http.post(f"{url}/v1/x", content=b"{}", extensions={"trace": trace})
            assert response.json() == {"choices": []}

        await whole()  # the connection is opened and pooled (it outlives the request)
        assert await _garbage_after(whole, url)() == []
        assert await _garbage_after(streamed, url)() == []
        assert await _garbage_after(traced, url)() == []
        assert kept[0]() is None  # the idle pooled connection keeps nothing of that request
        await http.aclose()

    run(handler, test)


def test_the_cycle_check_leaves_out_only_garbage_of_another_port() -> None:
    """Another thread's request (httpx's own client leaves a cycle per response) must not fail
    the test above in a combined run; a cycle of this port's objects, or of none, still does."""
    theirs = httpx.Request("GET", "http://127.0.0.1:1111/x")
    mine = httpx.Request("GET", "http://127.0.0.1:2222/x")
    headers = httpx.Headers({"a": "b"})
    garbage: list[Any] = [[theirs], theirs, theirs.url, [mine], mine, mine.url, [headers], headers]

    assert _garbage_of_port(garbage, 2222) == ["Headers", "Request", "URL"]
    assert _garbage_of_port(garbage, 1111) == ["Headers", "Request", "URL"]
    assert len(_garbage_of_port(garbage, 3333)) == 1  # headers alone: nobody's, so counted


def _gateway_client() -> httpx.AsyncClient:
    from routing.gateway.upstream import _client_create

    return _client_create()


def _tenant_hosts_client() -> httpx.AsyncClient:
    from routing.egress import tenant_http_client, tenant_http_client_reset

    tenant_http_client_reset()  # a client of this event loop, checked under this test's settings
    return tenant_http_client()


@pytest.mark.parametrize(
    "client_make", [_gateway_client, _tenant_hosts_client], ids=["gateway", "tenant-hosts"]
)
def test_a_shared_client_never_sends_a_cookie_an_upstream_set(
    client_make: Callable[[], httpx.AsyncClient], settings: Any
) -> None:
    """One client serves every organization: the gateway's upstream client, and the client for
    tenant-chosen hosts (BYOK ``base_url``). A cookie a host sets must not follow the next
    request to that host: another organization's, maybe (two tenants pointing at one proxy)."""
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the test's host is 127.0.0.1

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            cookie = b"cookie:" in request.lower()
            writer.write(ok(b'{"cookie": %s}' % (b"true" if cookie else b"false"),
                            b"Set-Cookie: session=abc; Path=/"))  # fmt: skip
            await writer.drain()

    async def test(url: str, stats: dict[str, Any]) -> None:
        http = client_make()
        try:
            answers = [(await http.post(f"{url}/v1/x", content=b"{}")).json() for _ in range(2)]
        finally:
            await http.aclose()
        assert answers == [{"cookie": False}, {"cookie": False}]

    run(handler, test)
