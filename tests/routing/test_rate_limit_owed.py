"""What a process counted in-process while Redis refused (``Lease.claim``) is charged to Redis by
its next lease call apart from the slices it asks for (``limits_redis._LEASE``): a bucket whose
counter is already at its limit cannot make the call short. Against the real Redis at
``REDIS_URL``; the lease script is wrapped to count its calls and to stop a loop after a few."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from routing.gateway import limits, limits_redis
from routing.gateway.limits_lease import Lease
from tests.conftest import require_redis

pytestmark = pytest.mark.timeout(30)

_MAX_CALLS = 5  # far more than one admission needs: past it, the limiter is looping


@pytest.fixture
def counters(settings: Any, one_rate_limit_window: tuple[int, int]) -> Iterator[redis.Redis]:
    if not settings.REDIS_URL:
        require_redis()
    client = redis.Redis.from_url(settings.REDIS_URL)
    saved_leases, saved_local = dict(limits._leases), dict(limits._local)
    yield client
    client.delete(*client.keys(f"*:{one_rate_limit_window[0]}*") or ["-"])
    client.close()
    for table, saved in ((limits._leases, saved_leases), (limits._local, saved_local)):
        table.clear()
        table.update(saved)  # type: ignore[attr-defined]


def a_full_bucket_owing(client: redis.Redis, tag: str, window: int) -> Lease:
    """``tag``'s window fully leased in Redis (rpm 10, 5 tokens of 1000); this process holds 3
    requests of it and owes Redis one request it counted in-process while Redis refused."""
    requests_key, tokens_key = limits_redis.lease_keys(tag, window)
    client.set(requests_key, 10)
    client.set(tokens_key, 5)
    lease = limits._lease(tag, window)
    lease.requests, lease.tokens = 3, 5
    limits._local[(tag, window)] = [1, 0]
    return lease


def counting(get_client: Any, calls: list[int], *, awaited: bool) -> Any:
    def lease_client() -> tuple[Any, Any]:
        client, script = get_client()

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            assert len(calls) <= _MAX_CALLS, "the limiter calls the lease script in a loop"
            return script(*args, **kwargs)

        async def counted_async(*args: Any, **kwargs: Any) -> Any:
            return await counted(*args, **kwargs)

        return client, counted_async if awaited else counted

    return lease_client


def test_a_full_bucket_owing_in_process_requests_admits_a_sync_request_in_one_call(
    counters: redis.Redis, one_rate_limit_window: tuple[int, int], monkeypatch: Any
) -> None:
    """Its token slice spent, the sync path leases tokens while the window's requests are all
    leased. Old code: the owed request was in the all-or-nothing ask, every call came back
    short, nothing refused, and it called the script until the window's keys expired."""
    window = one_rate_limit_window[0]
    bucket = limits.Bucket("{tree0}:rl:0:owedsync", rpm=10, tpm=1000)
    lease = a_full_bucket_owing(counters, bucket.tag, window)
    lease.tokens = 0
    calls: list[int] = []
    monkeypatch.setattr(
        limits, "lease_client_sync", counting(limits.lease_client_sync, calls, awaited=False)
    )

    limits.admit_sync((bucket,))  # admitted from its own request slice and a new token slice

    assert len(calls) == 1
    assert lease.requests == 2 and lease.tokens == 1
    assert lease.requests_full_at == 10  # Redis was full: the owed request needs no room
    requests_key, tokens_key = limits_redis.lease_keys(bucket.tag, window)
    assert int(counters.get(requests_key) or 0) == 10
    assert int(counters.get(tokens_key) or 0) == 6


def test_a_full_parent_owing_in_process_requests_admits_its_childs_request_in_one_call(
    counters: redis.Redis, one_rate_limit_window: tuple[int, int], monkeypatch: Any
) -> None:
    """A key made by a key needs a request slice; its parent, fully leased in Redis, still has 3
    here and owes one. Old code: the parent's owed request made every call short, the child got
    -1 and was never marked spent, and ``admit_chain`` called the script in a loop."""
    window = one_rate_limit_window[0]
    child = limits.Bucket("{tree0}:rl:1:owedchild", rpm=10)
    parent = limits.Bucket("{tree0}:rl:0:owedparent", rpm=10)
    a_full_bucket_owing(counters, parent.tag, window)
    calls: list[int] = []
    monkeypatch.setattr(limits, "lease_client", counting(limits.lease_client, calls, awaited=True))

    async def run() -> None:
        try:
            await limits.admit_chain((child, parent), 0)
        finally:
            await limits.rate_limit_close()

    asyncio.run(run())

    assert len(calls) == 1
    assert limits._lease(parent.tag, window).requests == 2
    assert int(counters.get(limits_redis.lease_keys(child.tag, window)[0]) or 0) == 1
    assert int(counters.get(limits_redis.lease_keys(parent.tag, window)[0]) or 0) == 10


@pytest.mark.parametrize(
    ("failure", "kept"), [(asyncio.CancelledError, 0), (KeyError, 0), (RedisTimeoutError, 2)]
)
def test_what_is_owed_is_given_back_unless_the_script_may_have_run(
    failure: type[BaseException], kept: int
) -> None:
    """A call that failed before the script could run gives its claim back (the next charges it);
    after a timeout the script may have run, and charging again would count the requests twice."""
    from routing.gateway.limits_lease import (
        owing,
    )  # new: imported here so the others run on old code

    lease = Lease()
    with pytest.raises(failure), owing([lease], [(5, 0)], [(2, 0)], limits._lock) as owed:
        assert owed == [(2, 0)]
        raise failure
    assert lease.charged_requests == kept
