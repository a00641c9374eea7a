"""While Redis is unreachable the rate limiter backs it off (``routing/gateway/limits_redis.py``):
after a connection error it admits requests uncounted (fail open, as before) without trying Redis
for ``RATE_LIMIT_REDIS_BACKOFF_SECONDS``, on the gateway's path and the DRF views' alike, then
probes it again; the outage is logged once. Before, every request paid a connection attempt
(up to ``REDIS_CONNECT_TIMEOUT``).

The unreachable Redis is a real listener on the loopback that counts the connections it accepts
and closes each at once (no reply ever comes: a connection error). The back-off's clock is the
test's, so nothing here waits for it."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from accounts.keys import AuthenticatedKey
from routerhub.errors import RateLimited
from routing.gateway import limits, limits_redis
from routing.gateway.select_limits import select_admit_sync
from tests.conftest import require_redis

pytestmark = pytest.mark.timeout(30)


class DroppingRedis:
    """A listener that accepts each connection, counts it and closes it before any reply (or,
    ``silent``, keeps it open and never replies)."""

    def __init__(self, *, silent: bool = False) -> None:
        self.silent, self.held = silent, list[socket.socket]()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.connections = 0
        self.reachable = ""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.connections += 1  # before the close the client sees: exact once it returns
            if self.silent:
                self.held.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(5)
        for conn in self.held:
            conn.close()


@pytest.fixture
def dropping_redis(
    settings: Any, one_rate_limit_window: tuple[int, int]
) -> Iterator[DroppingRedis]:
    server = DroppingRedis()
    server.reachable = settings.REDIS_URL  # the test Redis, for the end of the outage
    settings.REDIS_URL = server.url
    settings.RATE_LIMIT_REDIS_BACKOFF_SECONDS = 5.0
    yield server
    server.close()


class _Clock:
    """The back-off's monotonic clock, advanced by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def a_key(rpm: int) -> AuthenticatedKey:
    return AuthenticatedKey(
        id=1, organization_id=1, organization_slug="o", scope="inference", name="k",
        prefix=secrets.token_hex(6), allowed_models=(), rpm=rpm, tpm=None, limit=None,
        limit_reset=None, expires_at=None,
    )  # fmt: skip


def admit(key: AuthenticatedKey) -> None:
    async def run() -> None:
        try:
            await limits.rate_limit_admit(key, 0)
        finally:
            await limits.rate_limit_close()

    asyncio.run(run())


def test_requests_within_the_backoff_do_not_try_redis_and_one_after_it_probes(
    dropping_redis: DroppingRedis, settings: Any, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    clock = _Clock()
    monkeypatch.setattr(limits_redis, "time", clock)
    settings.ROUTER_SELECT_RPM_FACTOR = 1
    key = a_key(rpm=1)

    with caplog.at_level(logging.WARNING, logger="routing.gateway.limits_redis"):
        admit(key)  # the connection is dropped: admitted uncounted, Redis backed off
        tried = dropping_redis.connections
        admit(key)  # past rpm 1, and within the back-off: neither path tries Redis
        admit(a_key(rpm=1))
        select_admit_sync(key, user_id=None)
        select_admit_sync(key, user_id=None)
        within = dropping_redis.connections
        clock.now += 5.0
        admit(key)  # the back-off is over: this one probes Redis (and fails open again)
        probed = dropping_redis.connections
        admit(key)  # backed off again
        select_admit_sync(key, user_id=None)

    assert tried >= 1
    assert within == tried  # old code: a connection attempt for each of these four
    assert probed > within
    assert dropping_redis.connections == probed
    outages = [r for r in caplog.records if "rate limits unavailable" in r.getMessage()]
    assert len(outages) == 1  # once for the outage, not once per request or per probe


def test_counting_resumes_once_a_probe_reaches_redis(
    dropping_redis: DroppingRedis, settings: Any, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    if not dropping_redis.reachable:
        require_redis()
    clock = _Clock()
    monkeypatch.setattr(limits_redis, "time", clock)
    key = a_key(rpm=1)
    admit(key)  # Redis unreachable: backed off
    settings.REDIS_URL = dropping_redis.reachable  # Redis is back; the limiter does not know
    admit(key)  # still within the back-off: uncounted

    clock.now += 5.0
    with caplog.at_level(logging.WARNING, logger="routing.gateway.limits_redis"):
        admit(key)  # the probe reaches Redis: counted, the key's one request this minute
        with pytest.raises(RateLimited):
            admit(key)

    assert any("Redis answers again" in r.getMessage() for r in caplog.records)


def test_one_probe_at_a_time_even_when_it_outlasts_the_backoff(
    dropping_redis: DroppingRedis, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """A probe of a Redis that accepts but never replies lasts a reply timeout (5 s, as long as
    the back-off). A thread's probe is parked there (a hook in its client) while the back-off
    runs out again: the event loop's request skips Redis instead of probing beside it. Before,
    the next probe was due one back-off after the first started, and they overlapped."""
    clock = _Clock()
    monkeypatch.setattr(limits_redis, "time", clock)
    settings.ROUTER_SELECT_RPM_FACTOR = 1
    admit(a_key(rpm=1))  # the connection is dropped: Redis backed off
    clock.now += 5.0
    probing, release = threading.Event(), threading.Event()
    client_sync = limits.lease_client_sync

    def parked_client() -> tuple[Any, Any]:
        probing.set()
        release.wait(20)
        return client_sync()

    monkeypatch.setattr(limits, "lease_client_sync", parked_client)
    prober = threading.Thread(
        target=select_admit_sync, args=(a_key(rpm=1),), kwargs={"user_id": None}
    )
    prober.start()
    assert probing.wait(20)
    before = dropping_redis.connections
    clock.now += 5.0  # the probe hangs past the back-off
    admit(a_key(rpm=1))  # a second caller past retry_at: must not probe
    skipped = dropping_redis.connections == before
    release.set()
    prober.join(20)

    assert skipped  # old code: a second probe beside the hung one
    assert dropping_redis.connections > before  # the parked probe did try Redis
