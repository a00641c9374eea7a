"""Rate limits through Redis with per-worker leases: never over the limit across workers, small
limits exact request by request, and the unused-lease shortfall bounded by 1% per worker.

Two workers are two lease tables (``limits._leases``) sharing one Redis, swapped in turn the way
two gateway processes would interleave.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from accounts.keys import AuthenticatedKey
from routerhub.errors import RateLimited
from routerhub.redis_clients import redis_client
from routing.gateway import limits, limits_redis
from routing.gateway.select_limits import rate_limit_admit_select, select_admit_sync
from tests.conftest import require_redis


@pytest.fixture
def redis_limits(settings: Any, one_rate_limit_window: tuple[int, int]) -> Iterator[None]:
    if not settings.REDIS_URL:
        require_redis()
    saved = dict(limits._leases)
    yield
    limits._leases.clear()
    limits._leases.update(saved)


def a_key(rpm: int | None = None, tpm: int | None = None) -> AuthenticatedKey:
    return AuthenticatedKey(
        id=1, organization_id=1, organization_slug="o", scope="inference", name="k",
        prefix=secrets.token_hex(6), allowed_models=(), rpm=rpm, tpm=tpm, limit=None,
        limit_reset=None, expires_at=None,
    )  # fmt: skip


def admitted(key: AuthenticatedKey, workers: int, requests: int, prompt_tokens: int = 0) -> int:
    """Send ``requests`` admissions, round-robin over ``workers`` lease tables; count the 200s."""
    tables: list[dict[Any, Any]] = [{} for _ in range(workers)]

    async def run() -> int:
        ok = 0
        for i in range(requests):
            limits._leases.clear()
            limits._leases.update(tables[i % workers])
            try:
                await limits.rate_limit_admit(key, prompt_tokens)
                ok += 1
            except RateLimited:
                pass
            tables[i % workers] = dict(limits._leases)
        await limits.rate_limit_close()
        return ok

    return asyncio.run(run())


def test_a_small_rpm_limit_is_exact_across_workers(redis_limits: None) -> None:
    assert admitted(a_key(rpm=7), workers=3, requests=20) == 7


def test_a_large_rpm_limit_is_never_exceeded_and_loses_at_most_one_percent_per_worker(
    redis_limits: None,
) -> None:
    served = admitted(a_key(rpm=2000), workers=2, requests=2500)

    assert 2000 - 2 * 20 <= served <= 2000


def test_tpm_counts_completion_tokens_reported_after_admission(redis_limits: None) -> None:
    key = a_key(tpm=100)

    async def run() -> list[bool]:
        outcomes = []
        for _ in range(3):
            try:
                await limits.rate_limit_admit(key, 10)
                outcomes.append(True)
                await limits.rate_limit_add_tokens(key, 50)  # the answer's tokens
            except RateLimited:
                outcomes.append(False)
        await limits.rate_limit_close()
        return outcomes

    # 10 + 50, then 10 + 50 (over 100 now: the limit is reached), then refused.
    assert asyncio.run(run()) == [True, True, False]


def test_concurrent_requests_are_not_refused_while_the_window_has_quota(redis_limits: None) -> None:
    """Completion tokens reported while a slice is being leased put it back into debt; a full
    grant from Redis still admits (a regression: such requests were refused with 429)."""
    key = a_key(rpm=1_000_000, tpm=1_000_000_000)

    async def one() -> bool:
        try:
            await limits.rate_limit_admit(key, 15)
        except RateLimited:
            return False
        await limits.rate_limit_add_tokens(key, 40)
        return True

    async def run() -> list[bool]:
        outcomes: list[bool] = []
        for _ in range(20):
            outcomes += await asyncio.gather(*(one() for _ in range(16)))
        await limits.rate_limit_close()
        return outcomes

    assert all(asyncio.run(run()))


def concurrent_bursts(rpm: int, bursts: list[int]) -> list[int]:
    """Burst ``i`` sends ``bursts[i]`` admissions at once (``asyncio.gather`` over the real
    limiter on Redis) from worker ``i`` (its own lease table), one burst after the other; the
    200s of each (in one window: ``redis_limits``)."""

    async def one(key: AuthenticatedKey) -> bool:
        try:
            await limits.rate_limit_admit(key, 20)
        except RateLimited:
            return False
        return True

    async def run(key: AuthenticatedKey) -> list[int]:
        served = []
        for requests in bursts:
            limits._leases.clear()  # the next worker's (empty) lease table
            served.append(sum(await asyncio.gather(*(one(key) for _ in range(requests)))))
        await limits.rate_limit_close()
        return served

    return asyncio.run(run(a_key(rpm=rpm)))


def test_concurrent_bursts_under_the_limit_are_never_refused(redis_limits: None) -> None:
    """A key allowed 1000 requests a minute sends 900 in two bursts of 450 concurrent requests,
    one per worker. A worker shares one lease per key between its concurrent requests (a
    regression: each leased a slice of its own, the first worker took the whole minute's quota
    and left it unused, and the second worker's requests got 429)."""
    assert concurrent_bursts(rpm=1000, bursts=[450, 450]) == [450, 450]
    assert concurrent_bursts(rpm=1000, bursts=[900]) == [900]


def test_concurrent_bursts_over_the_limit_admit_the_limit(redis_limits: None) -> None:
    # One worker: exactly the limit.
    assert concurrent_bursts(rpm=1000, bursts=[1500]) == [1000]
    assert concurrent_bursts(rpm=7, bursts=[50]) == [7]
    # Two workers: never more, and at most one slice (1% of the limit) left unused by the first.
    first, second = concurrent_bursts(rpm=1000, bursts=[800, 800])
    assert first == 800
    assert 1000 - 10 <= first + second <= 1000


class _Clock:
    """``time`` for the limiter alone: a monotonic clock the test advances; wall time as is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        import time

        return time.time()


def paced_leases(monkeypatch: pytest.MonkeyPatch, key: AuthenticatedKey,
                 paces: list[tuple[int, float]]) -> tuple[int, int, limits._Lease]:  # fmt: skip
    """Admit ``n`` requests ``gap`` seconds apart for each (n, gap) of ``paces``, in one worker;
    returns (requests admitted, Redis lease calls, the key's lease)."""
    clock = _Clock()
    monkeypatch.setattr(limits, "time", clock)
    calls = [0]
    lease_more = limits._lease_more

    async def counted(*args: Any) -> bool:
        calls[0] += 1
        return await lease_more(*args)

    monkeypatch.setattr(limits, "_lease_more", counted)

    async def run() -> int:
        ok = 0
        for requests, gap in paces:
            for _ in range(requests):
                await limits.rate_limit_admit(key, 0)
                ok += 1
                clock.now += gap
        await limits.rate_limit_close()
        return ok

    ok = asyncio.run(run())
    return ok, calls[0], next(iter(limits._leases.values()))


def test_a_key_used_at_a_steady_pace_leases_rarely(
    redis_limits: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """600 requests 20 ms apart (one connection at concurrency 1): the slice settles at about a
    second's worth. A regression: it fell back to one whenever a slice lasted over 0.1 s, so
    the key climbed 1, 2, 4, 8 and started over, a Redis call every four requests (~160)."""
    limits._leases.clear()
    ok, calls, _ = paced_leases(monkeypatch, a_key(rpm=1_000_000_000), [(600, 0.02)])

    assert ok == 600
    assert calls <= 25


def test_a_key_that_slows_down_leases_smaller_slices(
    redis_limits: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a fast stretch (slices up to 64), one request every 2 s: the slice shrinks to what
    that pace spends in a second (quota a worker holds and does not use is lost to the others
    at the minute's end)."""
    limits._leases.clear()
    key = a_key(rpm=1_000_000_000)
    _, _, lease = paced_leases(monkeypatch, key, [(100, 0.002)])
    assert lease.request_slice == 64

    ok, _, lease = paced_leases(monkeypatch, key, [(40, 2.0)])

    assert ok == 40
    assert lease.request_slice == 1


def test_the_first_request_of_a_key_in_a_window_is_one_redis_round_trip(
    redis_limits: None,
) -> None:
    """Issue 21: a key used rarely leases anew on its first request in a window (slices sized to
    its pace, one request), and that costs one command to Redis, the lease script (once the
    server knows it) — the only one a request sends before its upstream call."""
    sent: list[str] = []

    async def run() -> None:
        await limits.rate_limit_admit(a_key(rpm=1000, tpm=100_000), 10)  # loads the script
        client, _ = limits_redis.lease_client()
        execute = client.execute_command

        async def counted(*args: Any, **options: Any) -> Any:
            sent.append(str(args[0]))
            return await execute(*args, **options)

        client.execute_command = counted
        try:
            for _ in range(5):  # five keys, each new in this window
                await limits.rate_limit_admit(a_key(rpm=1000, tpm=100_000), 10)
        finally:
            client.execute_command = execute
            await limits.rate_limit_close()

    asyncio.run(run())
    assert sent == ["EVALSHA"] * 5


def test_sync_selects_reuse_one_client_with_no_event_loop_and_share_the_async_count(
    redis_limits: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DRF views' selects (``select_admit_sync``) under WSGI: before, ``async_to_sync`` made
    an event loop, and so a Redis client, per select (never closed). Now one sync client serves
    them, and they count in the same Redis bucket as the gateway's async selects."""
    import redis
    import redis.asyncio

    settings.ROUTER_SELECT_RPM_DEFAULT = 3
    key = a_key()  # no rpm: three selects a minute
    asyncio.run(admit_select_async(key))  # the gateway's path: one of the three
    made: list[str] = []
    for cls in (redis.Redis, redis.asyncio.Redis):
        init = cls.__init__

        def counted(self: Any, *args: Any, init: Any = init, **kwargs: Any) -> None:
            made.append(type(self).__module__)
            init(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counted)

    select_admit_sync(key, user_id=None)
    select_admit_sync(key, user_id=None)
    with pytest.raises(RateLimited) as refused:
        select_admit_sync(key, user_id=None)

    assert len(made) <= 1  # at most this process's first sync client; old code: one a select
    assert refused.value.headers["x-ratelimit-limit-requests"] == "3"


async def admit_select_async(key: AuthenticatedKey) -> None:
    await rate_limit_admit_select(key)
    await limits.rate_limit_close()


def test_the_sync_and_async_paths_draw_from_one_lease(
    redis_limits: None, one_rate_limit_window: tuple[int, int], settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A process holds one lease per bucket: a slice the gateway's selects leased is spent by
    the DRF views' (sync) selects, and theirs by the gateway's, without asking Redis again.
    Before, each path kept a lease table of its own: two partial leases per bucket and process,
    each quota left unused by the other at the window's end."""
    settings.ROUTER_SELECT_RPM_DEFAULT = 1000  # slices of up to 10
    monkeypatch.setattr(limits, "time", _Clock())  # slices double: no time passes between them
    key = a_key()
    requests_key, _ = limits_redis.lease_keys(limits.key_tag(key, "s"), one_rate_limit_window[0])
    client = redis_client()

    def leased() -> int:
        return int(client.get(requests_key) or 0)

    asyncio.run(admit_selects_async(key, 2))  # slices of 1 and 2: one select left in the lease
    assert leased() == 3
    select_admit_sync(key, user_id=None)  # spends it
    assert leased() == 3  # old code: the sync path leased a slice of its own (4)
    select_admit_sync(key, user_id=None)  # the lease is spent: the next slice (4) holds 3 more
    assert leased() == 7
    asyncio.run(admit_selects_async(key, 3))  # the event loop spends those three

    assert leased() == 7
    client.close()


async def admit_selects_async(key: AuthenticatedKey, selects: int) -> None:
    for _ in range(selects):
        await rate_limit_admit_select(key)
    await limits.rate_limit_close()


def test_a_lease_call_is_started_outside_the_lock_so_an_eager_task_cannot_deadlock(
    redis_limits: None,
) -> None:
    """An eager task factory (``asyncio.eager_task_factory``, Python 3.12+) runs a task's first
    step inside ``create_task``: ``_lease_more`` takes ``_lock`` at once, so a task started while
    the loop thread holds it (the old code) deadlocked on the non-reentrant lock. Structurally on
    every Python: no task is created while ``_lock`` is held (one thread here, so held means held
    by the loop thread); and on 3.12+ with the real eager factory, in a thread that must end."""
    import threading

    created_under_lock: list[str] = []

    def watching_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        if limits._lock.locked():
            created_under_lock.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    def run(factory: Any) -> None:
        async def requests() -> None:
            asyncio.get_running_loop().set_task_factory(factory)
            key = a_key(rpm=1000)
            for _ in range(3):
                await limits.rate_limit_admit(key, 0)
            await limits.rate_limit_close()

        asyncio.run(requests())

    run(watching_factory)
    assert created_under_lock == []  # old code: ["_lease_more", …]
    eager = getattr(asyncio, "eager_task_factory", None)
    if eager is not None:
        thread = threading.Thread(target=run, args=(eager,), daemon=True)
        thread.start()
        thread.join(20)
        assert not thread.is_alive()  # old code: the loop thread waits on its own lock forever
