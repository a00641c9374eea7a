"""A lean HTTP/1.1 transport for the gateway's ``httpx.AsyncClient``: asyncio protocols, a
keep-alive pool and httptools' C parser (the one uvicorn uses).

Why: httpx's default transport (httpcore over anyio) was the largest single cost of a proxied
request — about 1.5 ms of CPU per request on this machine (``python -m bench.profile_gateway``),
half of the gateway's total. This transport keeps httpx as the client API (requests, responses,
timeouts, content decoding, exceptions) and replaces only the wire: one ``transport.write`` per
request, parser callbacks per response, no per-request socket polling. It speaks plain HTTP/1.1
with keep-alive, chunked or sized bodies, TLS through httpx's SSL context, and flow control on
streamed bodies. A request's ``trace`` extension hears httpcore's events for the moment the request
has been written — every byte of it out of the write buffer, within the write timeout
(``http11.send_request_body.complete``, else ``.failed`` and ``WriteTimeout``) and its answer's head has been read
(``http11.receive_response_headers.complete``). Proxies and HTTP/2 are not handled here: ``upstream.http_client`` uses httpx's
own transport when a proxy is configured.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

_HIGH_WATER = 256 * 1024  # pause reading a streamed body when this much is unread
_LOW_WATER = 64 * 1024
# The most an answer's head (status line and headers, interim 1xx heads included) may be: what
# httpcore's h11 allows (``MAX_INCOMPLETE_EVENT_SIZE``), the transport this one replaced. A chunked
# body's trailers (and chunk framing) are held to it too: the bytes read since the body's last piece.
MAX_HEAD_BYTES = 100 * 1024
_Origin = tuple[bytes, str, int]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; serves one exchange at a time."""

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.served = 0
        self.idle_since = 0.0
        self.keep_alive = False
        self._loop = asyncio.get_running_loop()
        self._parser: Any = None
        self._waiter: asyncio.Future[None] | None = None
        self._request: httpx.Request | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self._head_bytes = 0  # what the answer's head took so far (``MAX_HEAD_BYTES``)
        self._body_pieces = 0
        self._since_body = 0  # bytes read since the body's last piece: framing, trailers
        self.complete = False
        self.error: Exception | None = None
        self.received_any = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]
        # Writing pauses while anything is unsent and resumes once all of it is (``drain``).
        transport.set_write_buffer_limits(high=0, low=0)  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        pass  # ``drain`` reads the buffer's size; ``resume_writing`` wakes it

    def resume_writing(self) -> None:
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        if self._parser is None or self.complete:
            self.keep_alive = False  # bytes nobody asked for: never reuse this connection
            return
        head_done, pieces = self.head_done, self._body_pieces
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(
                httpx.RemoteProtocolError(f"invalid HTTP response: {exc}", request=self._request)
            )
        if not self.head_done:  # every byte so far is head: httptools bounds none of it
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._head_too_large()
        elif head_done and not self.complete and self._parser is not None:
            # After the head, httptools buffers trailers (and chunk extensions) unbounded too.
            self._since_body = 0 if self._body_pieces != pieces else self._since_body + len(data)
            if self._since_body > MAX_HEAD_BYTES:
                self._head_too_large("trailers are")

    def _head_too_large(self, what: str = "head is") -> None:
        message = f"the answer's {what} larger than {MAX_HEAD_BYTES} bytes"
        self._fail(httpx.RemoteProtocolError(message, request=self._request))
        self._parser = None  # nothing more is read or kept; the connection is not reused
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.resume_writing()  # nothing more will be sent: the answer's wait says what failed
        if self._parser is None or self.complete:
            return
        framed = any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers
        )
        if self.head_done and not framed:
            self.on_message_complete()  # a body delimited by the connection closing
            return
        self._fail(
            httpx.RemoteProtocolError(
                "the server closed the connection before the response was complete",
                request=self._request,
            )
        )

    # httptools callbacks ------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:  # a chunked body's trailers are not kept
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if self.status < 200:  # an interim 1xx response: the real one follows
            self.headers = []
            return
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._body_pieces += 1
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def on_message_complete(self) -> None:
        if self.status < 200 and not self.head_done:
            return
        self.complete = True
        self.keep_alive = not self.lost and self._parser.should_keep_alive()
        self._wake()

    # the exchange -------------------------------------------------------------------------------
    def send(self, request: httpx.Request, head: bytes, body: bytes) -> None:
        self._request = request
        self._parser = httptools.HttpResponseParser(self)
        self.status, self.headers, self.head_done, self.complete = 0, [], False, False
        self.error, self.received_any, self.keep_alive = None, False, False
        self._head_bytes = self._body_pieces = self._since_body = 0
        self._chunks.clear()
        self._buffered = 0
        assert self.transport is not None
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)

    def unsent(self) -> int:
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    async def drain(self, timeout: float | None) -> None:
        """Wait until the request's bytes have all left the write buffer (the body is sent),
        raising ``WriteTimeout`` when ``timeout`` passes with none of them sent. A request
        written at once (the usual case) does not wait."""
        left = self.unsent()
        while left and not self.lost:
            waiter = self._drain_waiter = self._loop.create_future()
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                if self.unsent() >= left:
                    raise httpx.WriteTimeout(
                        "the upstream stopped reading the request", request=self._request
                    ) from None
            finally:
                self._drain_waiter = None
            left = self.unsent()

    def take(self) -> bytes | None:
        if not self._chunks:
            return None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered < _LOW_WATER and self.transport is not None:
            self.transport.resume_reading()
            self._paused = False
        return chunk

    async def wait(self, timeout: float | None) -> None:
        """Wait for the next parser event, or raise the exchange's error or ``ReadTimeout``."""
        if self.error is not None:
            raise self.error
        waiter = self._waiter = self._loop.create_future()
        timer = None if timeout is None else self._loop.call_later(timeout, self._time_out, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(
                httpx.ReadTimeout("timed out waiting for the upstream", request=self._request)
            )

    def _fail(self, error: Exception) -> None:
        self.error = error
        self.keep_alive = False
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Body(httpx.AsyncByteStream):
    """A response body read from its connection; the connection goes back to the pool once the
    body has been read to the end, and is closed if the reader stops early."""

    def __init__(
        self, transport: LeanTransport, connection: _Connection, read_timeout: float | None
    ) -> None:
        self._transport, self._connection, self._read_timeout = transport, connection, read_timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while True:
            chunk = connection.take()
            if chunk:
                yield chunk
            elif connection.complete:
                break
            else:
                await connection.wait(self._read_timeout)
        self._finish(reusable=True)

    async def aclose(self) -> None:
        self._finish(reusable=False)

    def _finish(self, *, reusable: bool) -> None:
        if not self._done:
            self._done = True
            self._transport.release(
                self._connection, reusable=reusable and self._connection.complete
            )


async def _drain(connection: _Connection, trace: Any, timeout: float | None) -> None:
    """``connection.drain``; on ``WriteTimeout`` the trace hears the body was not sent."""
    try:
        await connection.drain(timeout)
    except httpx.WriteTimeout as error:
        if trace is not None:  # the provider never had the whole request
            await trace("http11.send_request_body.failed", {"exception": error})
        raise


class LeanTransport(httpx.AsyncBaseTransport):
    """A pool of keep-alive HTTP/1.1 connections per origin, at most ``max_connections`` open."""

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._open = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        url = request.url
        origin: _Origin = (
            url.raw_scheme,
            url.host,
            url.port or (443 if url.scheme == "https" else 80),
        )
        fields = b"".join(b"%s: %s\r\n" % pair for pair in request.headers.raw)
        head = b"%s %s HTTP/1.1\r\n%s\r\n" % (request.method.encode(), url.raw_path, fields)
        body = await request.aread()
        for attempt in range(2):
            connection = await self._acquire(origin, request, timeouts)
            reused = connection.served > 0
            connection.send(request, head, body)
            trace = request.extensions.get("trace")
            try:
                if connection.unsent():  # a large body still going out: wait until it has
                    await _drain(connection, trace, timeouts.get("write"))
                if trace is not None:  # httpcore's names for the same moments
                    await trace("http11.send_request_body.complete", {"return_value": None})
                while not connection.head_done:
                    await connection.wait(timeouts.get("read"))
                if trace is not None:
                    head_seen = (b"HTTP/1.1", connection.status, b"", connection.headers)
                    await trace(
                        "http11.receive_response_headers.complete", {"return_value": head_seen}
                    )
            except httpx.RemoteProtocolError as error:
                self.release(connection, reusable=False)
                # A kept-alive connection the server closed just as we reused it: nothing of
                # this request was processed, so it is safe to send it once more on a new one —
                # after saying it was not sent (the wait for a connection bills nothing).
                if reused and not connection.received_any and attempt == 0:
                    if trace is not None:
                        await trace("http11.send_request_body.failed", {"exception": error})
                    continue
                raise
            except BaseException:
                self.release(connection, reusable=False)
                raise
            connection.served += 1
            return httpx.Response(
                connection.status,
                headers=connection.headers,
                stream=_Body(self, connection, timeouts.get("read")),
                extensions={"http_version": b"HTTP/1.1"},
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def release(self, connection: _Connection, *, reusable: bool) -> None:
        # An idle connection keeps nothing of its last request (its trace holds the Exchange).
        connection._request = None
        if reusable and connection.keep_alive and not connection.lost and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(connection.origin, []).append(connection)
        else:
            connection.close()
            self._open -= 1
        self._notify_slot()

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
                self._open -= 1
        self._idle.clear()

    async def _acquire(
        self, origin: _Origin, request: httpx.Request, timeouts: dict[str, float | None]
    ) -> _Connection:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.lost and now - connection.idle_since < self._expiry:
                return connection
            connection.close()
            self._open -= 1
        while self._open >= self._max:
            if not self._close_one_idle():
                await self._wait_for_slot(request, timeouts.get("pool"))
                idle = self._idle.get(origin)
                if idle:
                    return await self._acquire(origin, request, timeouts)
        self._open += 1
        try:
            return await self._connect(origin, request, timeouts.get("connect"))
        except BaseException:
            self._open -= 1
            self._notify_slot()
            raise

    async def _connect(
        self, origin: _Origin, request: httpx.Request, timeout: float | None
    ) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = self._ssl_context() if scheme == b"https" else None
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"connecting to {host}:{port} timed out", request=request
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(
                f"cannot connect to {host}:{port}: {exc}", request=request
            ) from exc
        return connection

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def _close_one_idle(self) -> bool:
        for connections in self._idle.values():
            if connections:
                connections.pop(0).close()
                self._open -= 1
                return True
        return False

    async def _wait_for_slot(self, request: httpx.Request, timeout: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            raise httpx.PoolTimeout(
                "no upstream connection became free in time", request=request
            ) from None
        finally:
            if waiter in self._slot_waiters:
                self._slot_waiters.remove(waiter)

    def _notify_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
