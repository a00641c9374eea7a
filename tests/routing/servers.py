"""Real HTTP servers for gateway tests: uvicorn in a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import uvicorn


class ServerThread:
    """Serve an ASGI app on a free local port until ``stop()``."""

    def __init__(self, app: Any, *, lifespan: str = "on") -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # log_config=None: uvicorn's loggers propagate to the root logger (and to the session's
        # log capture) instead of uvicorn installing handlers of its own.
        config = uvicorn.Config(
            app, log_level="warning", log_config=None, lifespan=lifespan, timeout_keep_alive=30
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()
        # The server's worker threads have ended; collecting their thread-local database
        # connections closes them, so the test database can be dropped.
        gc.collect()


def leaving_receive(receive: Any, until: Any) -> Any:
    """An ASGI ``receive`` for a client that sends its whole request, then reports itself gone
    (``http.disconnect``) once ``await until()`` returns: a client leaving at a chosen moment."""
    body_read = False

    async def client_receive() -> dict[str, Any]:
        nonlocal body_read
        if not body_read:
            message: dict[str, Any] = await receive()
            body_read = not message.get("more_body", False)
            return message
        await until()
        return {"type": "http.disconnect"}

    return client_receive


class LeavesWhen:
    """The gateway's ASGI app behind a client that leaves once ``gone()`` holds (checked on the
    gateway's event loop, so it can look at the tasks under way there) — or, with ``cancels``,
    behind a server that cancels the request's handler then (as at its shutdown, or a deadline
    of its own). ``sent``: the response body the gateway has sent so far."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.gone: Callable[[], bool] = lambda: False
        self.cancels = False
        self.sent = bytearray()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False
        self.sent.clear()

        async def left() -> None:
            while not self.gone():
                await asyncio.sleep(0.005)

        async def client_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            self.sent += message.get("body", b"")
            await send(message)

        if self.cancels:
            handler = asyncio.ensure_future(self.app(scope, receive, client_send))
            await left()
            handler.cancel()
            with suppress(asyncio.CancelledError):
                await handler
        else:
            await self.app(scope, leaving_receive(receive, left), client_send)
        if not started:  # the gateway answered nobody: close the exchange for the test's client
            await send({"type": "http.response.start", "status": 499, "headers": []})
            await send({"type": "http.response.body", "body": b""})


def closed_port_url() -> str:
    """A URL on which nothing listens (connection refused)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


# How long a test waits for background work it depends on (a request's settlement after its
# response, a usage record, a hold released). Generous: the wait ends as soon as the condition
# holds, and settlement alone may legitimately take 10 s (its durability wait, billing.wal)
# before a loaded 2-core CI machine queues it behind other work.
SETTLE_TIMEOUT = 60.0


def poll(predicate: Any, *, timeout: float = SETTLE_TIMEOUT, interval: float = 0.02) -> Any:
    """Wait for ``predicate()`` to return something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(interval)


def gateway_idle(timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until the in-process gateway has finished every request, settlement included (it runs
    after the response is sent): called before a test's database is flushed under it."""
    from routing.gateway.app import requests_in_flight

    poll(lambda: requests_in_flight() == 0, timeout=timeout)


def usage_stream_settled(redis_url: str, *, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until the in-process settler has settled every draft in the usage stream, then stop
    it (the next draft starts a fresh one).

    Called before a test's database is flushed: a draft settled after the flush would name rows
    that no longer exist (the settler sets such drafts aside, but the test's usage is lost). A
    settler left running in a long-lived test server would go on reading the streams of the
    tests (and live servers) that follow."""
    if not redis_url:
        return
    from billing.outbox import STREAM, usage_settlers_stop
    from routerhub.redis_clients import redis_client

    client = redis_client(redis_url)
    try:
        poll(lambda: client.xlen(STREAM) == 0, timeout=timeout)
    except AssertionError:
        left = client.xlen(STREAM)
        client.delete(STREAM)  # this test fails; the next ones start from an empty stream
        raise AssertionError(f"{left} usage draft(s) were not settled within {timeout} s") from None
    finally:
        client.close()
        usage_settlers_stop()
