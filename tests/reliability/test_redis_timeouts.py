"""A Redis that never answers costs a bounded wait, not a hang: every client the app makes
(``routerhub/redis_clients.py``) gives up connecting after ``REDIS_CONNECT_TIMEOUT`` and waiting
for a reply after ``REDIS_SOCKET_TIMEOUT``, and the rate limiter then fails open as documented.

Two stand-ins on the loopback, no network needed: a listener whose accept queue is full (the
kernel drops further SYNs, as a firewall does: connecting hangs), and a listener that completes
the handshake but never reads (a reply never comes). The timeouts are small here; the guard is
``pytest.mark.timeout``: before, each of these hung until it."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from accounts.keys import AuthenticatedKey
from routerhub.redis_clients import redis_client, redis_client_async
from routing.gateway import limits
from routing.gateway.select_limits import select_admit_sync

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def short_timeouts(settings: Any) -> None:
    settings.REDIS_CONNECT_TIMEOUT = 0.5
    settings.REDIS_SOCKET_TIMEOUT = 0.5


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A Redis URL whose connection attempts are never answered: the listener's accept queue
    (backlog 0) is full, so the kernel drops the next SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = []
    for _ in range(3):  # one fills the queue; the others stay in SYN-SENT, as ours will
        waiting = socket.socket()
        waiting.setblocking(False)
        waiting.connect_ex(("127.0.0.1", port))
        queued.append(waiting)
    yield f"redis://127.0.0.1:{port}/0"
    for sock in [*queued, listener]:
        sock.close()


@pytest.fixture
def silent() -> Iterator[str]:
    """A Redis URL that accepts connections (the kernel's handshake) and never replies."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()


@pytest.mark.usefixtures("short_timeouts")
@pytest.mark.parametrize("where", ["blackhole", "silent"])
def test_a_redis_that_never_answers_is_an_error_not_a_hang(
    where: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(where)

    async def ping_async() -> None:
        client = redis_client_async(url)
        try:
            await client.ping()
        finally:
            await client.aclose()

    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        redis_client(url).ping()
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        asyncio.run(ping_async())


@pytest.mark.usefixtures("short_timeouts", "one_rate_limit_window")
def test_the_rate_limiter_fails_open_when_redis_never_answers(
    blackhole: str, settings: Any
) -> None:
    """Both of its paths: the gateway's (async) and the DRF views' selects (sync)."""
    settings.REDIS_URL = blackhole
    key = AuthenticatedKey(
        id=1, organization_id=1, organization_slug="o", scope="inference", name="k",
        prefix=secrets.token_hex(6), allowed_models=(), rpm=1, tpm=None, limit=None,
        limit_reset=None, expires_at=None,
    )  # fmt: skip

    async def admit_twice() -> None:
        try:
            for _ in range(2):  # past rpm 1: uncounted, so admitted
                await limits.rate_limit_admit(key, 0)
        finally:
            await limits.rate_limit_close()

    asyncio.run(admit_twice())
    settings.ROUTER_SELECT_RPM_FACTOR = 1  # one select a minute
    for _ in range(2):
        select_admit_sync(key, user_id=None)
