"""Refresh ahead (``routerhub.ttl_cache``): a serving process reloads a cached API key, the
catalog and BYOK keys in the background before they expire, so that under steady traffic no
request waits for the database, and nothing is served older than its time-to-live.

The cache's clock is replaced through the module's own ``time`` reference (never the global
``time`` module); loads run for real against PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from accounts import keys
from accounts.models import ApiKey
from routerhub import ttl_cache
from routerhub.domain import NotAuthenticated
from routerhub.ttl_cache import MISS, TtlCache
from tests.factories import key_make, organization_make

pytestmark = pytest.mark.django_db(transaction=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(ttl_cache, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def _refresh_ahead(enabled: bool) -> Iterator[None]:
    before = ttl_cache._RefreshAhead.enabled  # a test server's lifespan may have turned it on
    ttl_cache.refresh_ahead_enable(enabled)
    keys.key_cache_clear()
    yield
    ttl_cache.refresh_ahead_enable(before)
    keys.key_cache_clear()


@pytest.fixture
def refreshing() -> Iterator[None]:
    yield from _refresh_ahead(True)


@pytest.fixture
def not_serving() -> Iterator[None]:
    yield from _refresh_ahead(False)


@pytest.fixture
def counted_key_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Key loads by the gateway's path (the prepared statement; the ORM's where it is used)."""
    loads: list[str] = []
    load, load_async = keys._load, keys._load_async

    def counting(digest: str) -> Any:
        loads.append(digest)
        return load(digest)

    async def counting_async(digest: str) -> Any:
        loads.append(digest)
        return await load_async(digest)

    monkeypatch.setattr(keys, "_load", counting)
    monkeypatch.setattr(keys, "_load_async", counting_async)
    return loads


async def _authenticate_then_settle(plaintext: str) -> Any:
    """One request's authentication, then whatever reload it started (as the server runs on)."""
    key = await keys.key_authenticate_async(plaintext)
    await asyncio.gather(*ttl_cache._RefreshAhead.tasks)
    return key


def test_a_key_in_steady_use_is_reloaded_before_it_expires(
    settings: Any, clock: Clock, refreshing: None, counted_key_loads: list[str]
) -> None:
    settings.API_KEY_CACHE_TTL = 1.0
    plaintext = key_make(organization_make())
    asyncio.run(_authenticate_then_settle(plaintext))
    assert len(counted_key_loads) == 1  # the miss, on the request path

    clock.now += 0.5  # fresh, not yet due
    asyncio.run(_authenticate_then_settle(plaintext))
    assert len(counted_key_loads) == 1

    clock.now += 0.4  # 0.9 s: past the refresh point, still fresh
    asyncio.run(_authenticate_then_settle(plaintext))
    assert len(counted_key_loads) == 2  # reloaded in the background (before: not until 1 s)

    # 1.5 s after the first load the key is still fresh: no request waits for a load.
    clock.now += 0.6
    key = asyncio.run(keys.key_authenticate_async(plaintext))
    assert len(counted_key_loads) == 2
    assert key.prefix == plaintext[: len(key.prefix)]


def test_a_background_reload_sees_a_revocation(
    settings: Any, clock: Clock, refreshing: None
) -> None:
    settings.API_KEY_CACHE_TTL = 1.0
    plaintext = key_make(organization_make())
    asyncio.run(_authenticate_then_settle(plaintext))
    ApiKey.objects.filter(digest=keys.key_digest(plaintext)).update(revoked_at=timezone.now())

    clock.now += 0.9
    asyncio.run(_authenticate_then_settle(plaintext))  # served the fresh entry, reloads
    clock.now += 0.05  # well within the old entry's life: the reload's answer counts now
    with pytest.raises(NotAuthenticated):
        asyncio.run(keys.key_authenticate_async(plaintext))


def test_nothing_reloads_ahead_outside_a_serving_process(
    settings: Any, clock: Clock, not_serving: None, counted_key_loads: list[str]
) -> None:
    settings.API_KEY_CACHE_TTL = 1.0
    plaintext = key_make(organization_make())
    asyncio.run(_authenticate_then_settle(plaintext))
    clock.now += 0.9
    asyncio.run(_authenticate_then_settle(plaintext))
    assert len(counted_key_loads) == 1
    clock.now += 0.2  # expired: the request loads it itself, as before
    asyncio.run(_authenticate_then_settle(plaintext))
    assert len(counted_key_loads) == 2


def test_an_entry_is_due_once_between_its_refresh_point_and_its_expiry(clock: Clock) -> None:
    cache: TtlCache[str, int] = TtlCache(lambda: 10.0)
    cache.put("a", 1)
    assert not cache.reload_due("a")
    clock.now += 8.5
    assert cache.reload_due("a")
    assert not cache.reload_due("a")  # one reload in flight at a time
    cache.put("a", 2)
    assert not cache.reload_due("a")
    clock.now += 10.0
    assert cache.get("a") is MISS
    assert not cache.reload_due("a")  # expired: a request loads it, not the background


def test_a_reload_begun_before_a_clear_is_not_stored(clock: Clock) -> None:
    cache: TtlCache[str, int] = TtlCache(lambda: 10.0)
    cache.put("a", 1)
    started = cache.generation
    cache.clear()
    cache.put("a", 2, generation=started)
    assert cache.get("a") is MISS


def test_a_failed_reload_leaves_the_entry_to_expire_as_before(
    clock: Clock, refreshing: None
) -> None:
    cache: TtlCache[str, int] = TtlCache(lambda: 10.0)
    cache.put("a", 1)
    clock.now += 9.0

    def broken(_: str) -> int:
        raise RuntimeError("database gone")

    async def request() -> None:
        ttl_cache.refresh_ahead(cache, "a", broken)
        await asyncio.gather(*ttl_cache._RefreshAhead.tasks)

    asyncio.run(request())
    assert cache.get("a") == 1
    assert cache.reload_due("a")  # the next request may try again


def test_stopping_waits_for_this_loops_reloads_only(clock: Clock, refreshing: None) -> None:
    """A reload in flight on another event loop (another server in the process) is its own
    shutdown's: this loop's stop waits for its own reload, then returns with the other still
    running, neither awaited nor cancelled. Old code waited for it too: the other reload
    finished (released after 5 s) before the stop returned (at its 20 s bound)."""
    cache: TtlCache[str, int] = TtlCache(lambda: 10.0)
    cache.put("own", 1)
    cache.put("other", 1)
    clock.now += 9.0  # both due
    release, started, order = threading.Event(), threading.Event(), []

    async def other_load(_: str) -> int:
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 20.0)
        order.append("other loop's reload done")
        return 2

    async def other_server() -> None:
        ttl_cache.refresh_ahead(cache, "other", other_load)
        started.set()
        while cache.get("other") != 2:  # serving on until its reload is stored
            await asyncio.sleep(0.01)

    async def own_load(_: str) -> int:
        return 2

    async def own_shutdown() -> None:
        ttl_cache.refresh_ahead(cache, "own", own_load)
        await ttl_cache.refresh_ahead_stop(timeout=20.0)
        order.append("stopped")

    other = threading.Thread(target=asyncio.run, args=(other_server(),))
    other.start()
    assert started.wait(timeout=10.0)
    watchdog = threading.Timer(5.0, release.set)  # old code: holds the stop until then
    watchdog.start()
    try:
        asyncio.run(own_shutdown())
    finally:
        release.set()
        watchdog.cancel()
        other.join(timeout=20.0)

    assert order == ["stopped", "other loop's reload done"]
    assert cache.get("own") == 2  # its own reload was waited for
    assert cache.get("other") == 2  # stored on its own loop: not cancelled


def test_a_router_row_in_steady_use_is_reloaded_before_it_expires(
    settings: Any, clock: Clock, refreshing: None
) -> None:
    from routing.routers import router_cache_clear, router_row_async
    from training.models import Router

    settings.ROUTER_CACHE_TTL = 0.5
    router_cache_clear()
    organization = organization_make()
    Router.objects.create(organization=organization, slug="support", candidates=["a", "b"])

    async def row() -> Any:
        found = await router_row_async(organization.pk, "support")
        await asyncio.gather(*ttl_cache._RefreshAhead.tasks)
        return found

    assert asyncio.run(row()).candidates == ("a", "b")
    Router.objects.filter(organization=organization).update(candidates=["a", "c"])
    clock.now += 0.45  # past the refresh point: served the cached row, reloaded behind it
    assert asyncio.run(row()).candidates == ("a", "b")
    Router.objects.filter(organization=organization).update(candidates=["a", "d"])
    clock.now += 0.1  # the first row would have expired; the reloaded one is fresh
    assert asyncio.run(router_row_async(organization.pk, "support")).candidates == ("a", "c")
    router_cache_clear()


def test_a_process_serving_no_router_does_not_query_for_activations(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The activation watcher skips its query while no router row is cached (before, an empty
    cache still read as "serving routers": every worker queried twice a second in a thread)."""
    from routing import routers

    settings.ROUTER_CACHE_TTL = 0.1
    routers.router_cache_clear()
    checks: list[object] = []
    monkeypatch.setattr(routers, "_warm_activated", lambda since: checks.append(since) or since)

    async def watch_a_while() -> None:
        watcher = asyncio.ensure_future(routers.routers_watch_activations())
        await asyncio.sleep(0.5)  # several of its 0.1 s rounds
        watcher.cancel()

    asyncio.run(watch_a_while())
    assert checks == []
    routers._rows.put((None, "some-router"), None)
    asyncio.run(watch_a_while())
    assert checks  # with a row cached it does check
    routers.router_cache_clear()
