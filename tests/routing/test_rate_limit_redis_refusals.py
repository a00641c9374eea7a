"""Only a Redis that does not answer backs the rate limiter off (``routing/gateway/limits_redis.py``):
a Redis at its ``maxclients`` refuses the connection but is up, and this process's own bounded
pool being busy says nothing about Redis; either fails open for its request alone. A lease call is
one attempt: redis-py's retries made one probe of a Redis that never replies four reply timeouts.

The full Redis is a throwaway ``redis-server`` on a free port with ``maxclients 1``, started and
killed by its PID; the silent one a loopback listener that accepts and never replies."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from accounts.keys import AuthenticatedKey
from routerhub.errors import RateLimited
from routing.gateway import limits, limits_redis
from routing.gateway.select_limits import select_admit_sync
from tests.conftest import require_redis, service_missing
from tests.routing.test_rate_limit_backoff import DroppingRedis, a_key
from tests.routing.test_rate_limit_lineage import a_key as lineage_key

pytestmark = pytest.mark.timeout(30)


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


@pytest.fixture
def full_redis(settings: Any, one_rate_limit_window: tuple[int, int]) -> Iterator[redis.Redis]:
    """A real Redis at its ``maxclients`` (1): the returned client holds the one connection."""
    if shutil.which("redis-server") is None:
        service_missing("needs redis-server on PATH")
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--maxclients", "1",
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    holder = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                holder.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
        yield holder
    finally:
        holder.close()
        server.kill()
        server.wait(10)


def admit(key: AuthenticatedKey, times: int = 1) -> None:
    async def run() -> None:
        try:
            for _ in range(times):
                await limits.rate_limit_admit(key, 0)
        finally:
            await limits.rate_limit_close()

    asyncio.run(run())


def test_a_redis_at_its_maxclients_does_not_back_the_limiter_off(
    full_redis: redis.Redis, settings: Any
) -> None:
    """Both paths count the refused request in this process alone; once a connection is free,
    the next request is counted in Redis at once, with the one counted in-process. Old code: the
    refusal backed Redis off for the whole process (``_Outage.since`` set), and the request
    after it was admitted uncounted."""
    settings.ROUTER_SELECT_RPM_FACTOR = 1
    key = a_key(rpm=1)
    admit(key)  # refused by Redis: counted in this process
    with pytest.raises(RateLimited):
        admit(key)  # the process's count holds the rpm (before: admitted uncounted)
    select_admit_sync(key, user_id=None)

    assert limits_redis._Outage.since is None
    full_redis.config_set("maxclients", 10)  # room again
    with pytest.raises(RateLimited):
        admit(key)  # counted in Redis: the in-process request was the minute's one
    with pytest.raises(RateLimited):
        select_admit_sync(key, user_id=None)  # the sync path's too
    assert int(full_redis.get(_requests_key(key, "")) or 0) == 1


def _requests_key(key: AuthenticatedKey, kind: str) -> str:
    return limits_redis.lease_keys(limits.key_tag(key, kind), limits._window()[0])[0]


def test_requests_counted_in_process_while_redis_refused_are_charged_to_it_after(
    full_redis: redis.Redis, settings: Any
) -> None:
    """An rpm-3 key's two requests counted in this process while Redis refused (its
    ``maxclients``) are added to Redis's count by the first lease call once it answers: the
    key gets one more request in the minute, not three, and Redis's counter (every worker's)
    says 3. Old code: they never reached Redis, which leased the key 3 more (5 in the minute)."""
    settings.ROUTER_SELECT_RPM_FACTOR = 1
    key = a_key(rpm=3)
    admit(key, times=2)  # refused by Redis: counted in this process
    full_redis.config_set("maxclients", 10)  # Redis answers again

    admit(key)
    with pytest.raises(RateLimited):
        admit(key)
    assert int(full_redis.get(_requests_key(key, "")) or 0) == 3
    select_admit_sync(key, user_id=None)  # the sync path charges its own in-process selects
    full_redis.config_set("maxclients", 1)
    full_redis.client_kill_filter(skipme=True)  # the sync client's pooled connection too
    select_admit_sync(key, user_id=None)  # refused: counted in-process (2 of 3)
    full_redis.config_set("maxclients", 10)
    select_admit_sync(key, user_id=None)  # 3 of 3: leases 1 and charges the refused one
    with pytest.raises(RateLimited):
        select_admit_sync(key, user_id=None)
    assert int(full_redis.get(_requests_key(key, "s")) or 0) == 3


def test_a_busy_pool_is_bounded_and_does_not_back_the_limiter_off(
    settings: Any, one_rate_limit_window: tuple[int, int]
) -> None:
    """With ``RATE_LIMIT_REDIS_MAX_CONNECTIONS`` 1 held by another call, a lease call waits at
    most ``RATE_LIMIT_REDIS_POOL_WAIT_SECONDS`` and its request is counted in this process, Redis
    not backed off. Old code: the pool was unbounded (the lease call opened a second connection
    and counted)."""
    if not settings.REDIS_URL:
        require_redis()
    settings.RATE_LIMIT_REDIS_MAX_CONNECTIONS = 1
    settings.REDIS_SOCKET_TIMEOUT = 0.3
    key = a_key(rpm=1)
    requests_key, _ = limits_redis.lease_keys(limits.key_tag(key, ""), one_rate_limit_window[0])

    async def run() -> tuple[int, bool]:
        client, _ = limits_redis.lease_client()
        held = await client.connection_pool.get_connection()
        try:
            await limits.rate_limit_admit(key, 0)
        finally:
            await client.connection_pool.release(held)
        leased = int(await client.get(requests_key) or 0)
        backed_off = limits_redis._Outage.since is not None
        with pytest.raises(RateLimited):  # a connection is free: the minute's one is charged
            await limits.rate_limit_admit(key, 0)
        charged = int(await client.get(requests_key) or 0)
        await limits.rate_limit_close()
        return leased, backed_off, charged

    leased, backed_off, charged = asyncio.run(run())
    assert leased == 0  # old code: 1 (a second connection leased)
    assert not backed_off
    assert charged == 1


def test_a_busy_pool_still_holds_a_parents_rpm_in_the_process(
    settings: Any, one_rate_limit_window: tuple[int, int]
) -> None:
    """Children of an rpm-1 key, each its own lease call, find the one connection held: each
    request is counted in this process (its chain's buckets), so one of three is admitted. Old
    code: all three admitted uncounted after waiting ``REDIS_SOCKET_TIMEOUT`` each (a flood of
    keys with tiny limits made the parent's rpm stop binding)."""
    if not settings.REDIS_URL:
        require_redis()
    settings.RATE_LIMIT_REDIS_MAX_CONNECTIONS = 1
    settings.REDIS_SOCKET_TIMEOUT = 0.3  # the old code's pool wait
    parent = lineage_key(rpm=1)
    children = [lineage_key(rpm=5, made_by=parent) for _ in range(3)]

    async def run() -> int:
        client, _ = limits_redis.lease_client()
        held = await client.connection_pool.get_connection()
        admitted = 0
        try:
            for child in children:
                try:
                    await limits.rate_limit_admit(child, 0)
                    admitted += 1
                except RateLimited:
                    pass
        finally:
            await client.connection_pool.release(held)
            await limits.rate_limit_close()
        return admitted

    assert asyncio.run(run()) == 1  # one of three, as the parent's rpm says; old code: 3
    assert limits_redis._Outage.since is None


@pytest.fixture
def silent_redis(settings: Any, one_rate_limit_window: tuple[int, int]) -> Iterator[DroppingRedis]:
    server = DroppingRedis(silent=True)
    # redis-py reads retry options from the URL (and they win over the client's arguments).
    settings.REDIS_URL = f"{server.url}?retry_on_timeout=true"
    settings.REDIS_CONNECT_TIMEOUT = 0.3
    settings.REDIS_SOCKET_TIMEOUT = 0.3
    yield server
    server.close()


def test_a_probe_is_one_attempt_on_both_paths(silent_redis: DroppingRedis, settings: Any) -> None:
    """One lease call against a Redis that never replies opens one connection and waits one
    reply timeout, whatever retries ``REDIS_URL`` asks redis-py for. Old code: the client took
    them (here one retry: two connections, two reply timeouts per probe)."""
    settings.ROUTER_SELECT_RPM_FACTOR = 1
    admit(a_key(rpm=1))
    async_attempts = silent_redis.connections
    limits_redis._Outage.since, limits_redis._Outage.retry_at = None, 0.0  # not backed off
    select_admit_sync(a_key(rpm=1), user_id=None)

    assert async_attempts == 1
    assert silent_redis.connections == 2


def test_a_refusal_after_a_leased_request_counts_that_request(
    full_redis: redis.Redis, settings: Any
) -> None:
    """An rpm-1 key's request leased from Redis, then its next one refused by Redis (its
    ``maxclients``): the in-process count includes the leased one, so the second is a 429. Old
    code: the process counted from 0 and admitted it, 2 requests in the minute."""
    full_redis.config_set("maxclients", 10)
    key = a_key(rpm=1)
    admit(key)  # leased from Redis
    full_redis.config_set("maxclients", 1)  # the holder's connection is the one allowed

    with pytest.raises(RateLimited):
        admit(key)
    assert limits_redis._Outage.since is None  # refused, not an outage
