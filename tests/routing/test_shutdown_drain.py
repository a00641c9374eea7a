"""A gateway worker's shutdown waits for the handlers it cancelled — its own, on its own event loop
— at most ``GATEWAY_SHUTDOWN_DRAIN_SECONDS``, and closes only what its own loop opened.

Before (``fcc952e``'s predecessor), the lifespan shutdown test hung in the full suite: the
shutdown closed the rate limiter's Redis client although another loop (the tests' shared gateway
server) had made it, and that close never finished. The drain itself counted the handlers of the
whole process (``InFlight.count``), which other servers' handlers keep non-zero."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest

from routing.gateway import app as gateway
from routing.gateway import limits, limits_redis, upstream

HANG_GUARD_S = 20  # far above any bound the tests set: reaching it means the shutdown hung


async def _never(_message: Any) -> None:
    raise AssertionError("unused")


async def _shut_down() -> None:
    """The lifespan's shutdown, as uvicorn sends it (no startup: nothing else to stop)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.shutdown"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await gateway.gateway_lifespan(receive, send)
    assert sent == [{"type": "lifespan.shutdown.complete"}]


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``gateway_app`` with a handler that waits until cancelled, then settles: at once, or
    (path ``/never``) not until the test releases it."""
    state: dict[str, Any] = {"settled": [], "release": threading.Event()}

    async def handle(scope: dict[str, Any]) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if scope["path"] == "/never":
                while not state["release"].is_set():
                    with suppress(asyncio.CancelledError):
                        await asyncio.sleep(0.01)
            await asyncio.sleep(0)  # handing its usage over
            state["settled"].append(scope["path"])
            raise

    monkeypatch.setattr(gateway, "GatewayRequest", lambda scope, _receive, _send: scope)
    monkeypatch.setattr(gateway, "_handle", handle)
    return state


def _request(path: str) -> asyncio.Future[None]:
    return asyncio.ensure_future(gateway.gateway_app({"path": path}, _never, _never))


async def _cancel_all() -> None:
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def other_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """Another server's event loop in this process (as the tests' shared gateway runs)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_a_handler_that_never_settles_holds_the_shutdown_only_for_its_bound(
    settings, handlers: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_SHUTDOWN_DRAIN_SECONDS = 0.2

    async def run() -> bool:
        stuck = _request("/never")
        await asyncio.sleep(0)
        stuck.cancel()
        await _shut_down()
        done = stuck.done()
        handlers["release"].set()
        with suppress(asyncio.CancelledError):
            await stuck
        return done

    with caplog.at_level(logging.WARNING):
        done_at_shutdown = asyncio.run(asyncio.wait_for(run(), HANG_GUARD_S))

    assert not done_at_shutdown  # the shutdown went on without it
    assert "1 request handler(s) still settling after 0.2 s" in caplog.text
    assert handlers["settled"] == ["/never"]  # once released


def test_a_handler_left_running_on_another_loop_does_not_hold_this_shutdown(
    settings, handlers: dict[str, Any], other_loop: asyncio.AbstractEventLoop, caplog
) -> None:  # type: ignore[no-untyped-def]
    """Another server's handler (and its count in ``InFlight``) never holds this one's shutdown,
    which still waits for its own cancelled handler."""
    settings.GATEWAY_SHUTDOWN_DRAIN_SECONDS = 3600.0  # waiting on the other loop would hang

    async def elsewhere() -> None:
        await gateway.gateway_app({"path": "/elsewhere"}, _never, _never)

    asyncio.run_coroutine_threadsafe(elsewhere(), other_loop)

    async def run() -> list[str]:
        mine = _request("/mine")
        await asyncio.sleep(0)
        mine.cancel()
        await _shut_down()
        return list(handlers["settled"])

    with caplog.at_level(logging.WARNING):
        settled_at_shutdown = asyncio.run(asyncio.wait_for(run(), HANG_GUARD_S))

    assert settled_at_shutdown == ["/mine"]
    assert "still settling" not in caplog.text


def test_a_shutdown_leaves_the_clients_another_loop_opened(
    other_loop: asyncio.AbstractEventLoop,
) -> None:
    """The rate limiter's Redis client and the upstream client another server's loop made (and
    connected) are that loop's: this loop's shutdown neither closes them nor waits on them.
    Before, it closed the Redis client from the wrong loop, and that never finished."""

    async def connect() -> tuple[Any, Any]:
        client, _script = limits_redis.lease_client()
        await client.ping()
        return client, upstream.http_client()

    redis_client, http_client = asyncio.run_coroutine_threadsafe(connect(), other_loop).result(10)

    asyncio.run(asyncio.wait_for(_shut_down(), HANG_GUARD_S))

    assert (limits_redis._RedisState.client, upstream._State.client) == (redis_client, http_client)
    assert asyncio.run_coroutine_threadsafe(redis_client.ping(), other_loop).result(10)
    asyncio.run_coroutine_threadsafe(limits.rate_limit_close(), other_loop).result(10)
    asyncio.run_coroutine_threadsafe(upstream.http_client_close(), other_loop).result(10)
