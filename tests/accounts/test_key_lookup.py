"""Issue 21: a gateway key-cache miss is one prepared statement on the gateway's own
PostgreSQL connections (``accounts.key_lookup``), not the ORM in a worker thread, and answers
exactly what the ORM path answers; revocations, limit and role changes still reach the gateway
within ``API_KEY_CACHE_TTL``. The cache's clock is replaced through the module's own ``time``
reference; reads run for real against PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import types
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.utils import timezone

from accounts import key_lookup, keys
from accounts.models import ApiKey, Membership, Role
from billing import pg_async
from routerhub import ttl_cache
from routerhub.domain import NotAuthenticated
from tests.conftest import require_postgres
from tests.db_locks import LOCK_WAITS_SQL, gateway_sessions_terminate
from tests.factories import key_make, member_add, organization_make

pytestmark = pytest.mark.django_db(transaction=True)


class Clock:
    now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    require_postgres()
    fake = Clock()
    monkeypatch.setattr(ttl_cache, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


@pytest.fixture
def no_orm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ORM's key read (in a thread) fails the test if the gateway's path reaches it."""

    def orm_read(digest: str) -> Any:
        raise AssertionError("a gateway cache miss read the key through the ORM")

    monkeypatch.setattr(keys, "_load", orm_read)


def _authenticate(plaintext: str) -> keys.AuthenticatedKey:
    async def run() -> keys.AuthenticatedKey:
        key = await keys.key_authenticate_async(plaintext)
        await asyncio.gather(*ttl_cache._RefreshAhead.tasks)  # a reload it started
        return key

    return asyncio.run(run())


def _unknown(plaintext: str) -> None:
    with pytest.raises(NotAuthenticated):
        _authenticate(plaintext)


def test_a_cache_miss_is_one_statement_on_the_gateways_connection_not_the_orm(
    clock: Clock, settings: Any
) -> None:
    organization = organization_make()
    plaintext = key_make(organization, rpm=90, tpm=5000, allowed_models=["demo/small"])
    orm = keys.key_authenticate(plaintext)  # the management API's path, through the ORM
    keys.key_cache_clear()
    before = key_lookup.key_lookup_count()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keys, "_load", lambda digest: pytest.fail("ORM read on a gateway miss"))
        key = _authenticate(plaintext)
    assert key_lookup.key_lookup_count() == before + 1
    assert key == orm


def test_the_statement_answers_what_the_orm_answers(clock: Clock, settings: Any) -> None:
    organization = organization_make()
    organization.prompt_logging = True
    organization.budget_aware_routing = True
    organization.save()
    admin = member_add(organization, Role.ADMIN)
    leaver = member_add(organization, Role.MEMBER)
    expires = timezone.now() + timedelta(days=3)
    plaintexts = [
        key_make(organization, created_by=admin, limit=Decimal("2.5"), limit_reset="daily"),
        key_make(organization, created_by=admin, expires_at=expires),
        key_make(organization, created_by=leaver),
    ]
    orphan = key_make(organization)
    ApiKey.objects.filter(digest=keys.key_digest(orphan)).update(
        created_by=None, created_by_role=None
    )
    Membership.objects.filter(user=admin).update(role=Role.MEMBER)  # demoted: acts as member
    Membership.objects.filter(user=leaver).delete()  # left: the key authenticates nothing
    for plaintext in [*plaintexts, orphan]:
        digest = keys.key_digest(plaintext)
        assert asyncio.run(keys._load_async(digest)) == keys._load(digest), plaintext[:16]
    assert asyncio.run(keys._load_async(keys.key_digest(orphan))).role == Role.MEMBER  # type: ignore[union-attr]
    assert asyncio.run(keys._load_async(keys.key_digest(plaintexts[0]))).role == Role.MEMBER  # type: ignore[union-attr]
    assert asyncio.run(keys._load_async(keys.key_digest(plaintexts[2]))) is None


def test_last_used_is_written_by_the_statement_at_most_once_a_minute(
    clock: Clock, no_orm: None
) -> None:
    plaintext = key_make(organization_make())
    row = ApiKey.objects.filter(digest=keys.key_digest(plaintext))
    assert row.get().last_used_at is None
    _authenticate(plaintext)
    first = row.get().last_used_at
    assert first is not None
    clock.now += 5.0  # the entry expired: read again, not written again within the minute
    _authenticate(plaintext)
    assert row.get().last_used_at == first
    row.update(last_used_at=first - timedelta(minutes=2))
    clock.now += 5.0
    _authenticate(plaintext)
    assert row.get().last_used_at > first  # type: ignore[operator]


def test_revocation_and_limit_changes_reach_the_gateway_within_the_ttl(
    clock: Clock, settings: Any, no_orm: None
) -> None:
    settings.API_KEY_CACHE_TTL = 1.0
    plaintext = key_make(organization_make(), rpm=60)
    row = ApiKey.objects.filter(digest=keys.key_digest(plaintext))
    assert _authenticate(plaintext).rpm == 60
    row.update(rpm=6)
    clock.now += 1.01
    assert _authenticate(plaintext).rpm == 6
    row.update(revoked_at=timezone.now())
    clock.now += 1.01
    _unknown(plaintext)


def test_a_background_reload_runs_the_statement_on_the_loop(
    clock: Clock, settings: Any, no_orm: None
) -> None:
    settings.API_KEY_CACHE_TTL = 1.0
    before = ttl_cache._RefreshAhead.enabled
    ttl_cache.refresh_ahead_enable(True)
    try:
        plaintext = key_make(organization_make())
        _authenticate(plaintext)
        count = key_lookup.key_lookup_count()
        ApiKey.objects.filter(digest=keys.key_digest(plaintext)).update(revoked_at=timezone.now())
        clock.now += 0.9  # due: served, and reloaded behind it by the statement
        _authenticate(plaintext)
        assert key_lookup.key_lookup_count() == count + 1
        clock.now += 0.05
        _unknown(plaintext)  # the reload's answer, well before the old entry's expiry
    finally:
        ttl_cache.refresh_ahead_enable(before)


def test_an_unknown_key_costs_one_statement_per_ttl_not_per_request(
    clock: Clock, no_orm: None
) -> None:
    plaintext = "rh-live-" + secrets.token_urlsafe(32)
    before = key_lookup.key_lookup_count()
    for _ in range(5):
        _unknown(plaintext)
    assert key_lookup.key_lookup_count() == before + 1


def test_concurrent_misses_are_read_together_each_key_once(clock: Clock, no_orm: None) -> None:
    """A burst on a cold cache: 20 requests of one key and one each of 10 others (before: one
    ORM read in a thread each)."""
    organization = organization_make()
    plaintexts = [key_make(organization, rpm=10 + i) for i in range(11)]
    burst_of = [plaintexts[0]] * 20 + plaintexts[1:]
    before = key_lookup.key_lookup_count()

    async def burst() -> list[keys.AuthenticatedKey]:
        return await asyncio.gather(*(keys.key_authenticate_async(p) for p in burst_of))

    found = asyncio.run(burst())
    assert key_lookup.key_lookup_count() - before <= 2  # at most two readers at a time
    assert [key.rpm for key in found] == [10] * 20 + [11 + i for i in range(10)]


def _unknown_key() -> str:
    return "rh-live-" + secrets.token_urlsafe(32)


@contextlib.asynccontextmanager
async def _keys_locked() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """The keys' table locked by another connection until it rolls back or the block ends: key
    reads wait, each on its connection."""
    async with await psycopg.AsyncConnection.connect(**pg_async._conninfo()) as holder:
        await holder.execute("LOCK TABLE accounts_apikey IN ACCESS EXCLUSIVE MODE")
        yield holder


async def _misses_behind_a_waiting_read(count: int) -> list[asyncio.Future[Any]]:
    """One miss whose read waits for the lock (``_keys_locked``), then ``count`` more."""
    misses = [asyncio.ensure_future(keys.key_authenticate_async(_unknown_key()))]
    await _until_statements_wait_for_a_lock()
    misses += [asyncio.ensure_future(keys.key_authenticate_async(_unknown_key()))
               for _ in range(count)]  # fmt: skip
    return misses


async def _until_statements_wait_for_a_lock(count: int = 1) -> None:
    async with await psycopg.AsyncConnection.connect(
        **pg_async._conninfo(), autocommit=True
    ) as watcher:
        deadline = time.monotonic() + 30
        while (await (await watcher.execute(LOCK_WAITS_SQL)).fetchone())[0] < count:
            assert time.monotonic() < deadline, "the key reads never waited for the lock"
            await asyncio.sleep(0.01)


def test_a_flood_of_unknown_keys_reads_on_at_most_half_the_connections(
    clock: Clock, settings: Any, no_orm: None
) -> None:
    """Distinct random keys (nothing to share) wait for a slot: credit holds keep the rest of
    the gateway's connections. The keys' table is locked, so that each statement reading keys
    keeps its connection until the whole flood has arrived."""
    settings.GATEWAY_DB_CONNECTIONS = 4

    async def flood() -> tuple[list[Any], list[Any]]:
        async with _keys_locked() as holder:
            waves = []
            for _ in range(10):  # waves of 30, each arriving while the last is being read
                calls = [keys.key_authenticate_async(_unknown_key()) for _ in range(30)]
                waves.append(asyncio.gather(*calls, return_exceptions=True))
                await asyncio.sleep(0)
            await _until_statements_wait_for_a_lock(2)
            holds = [pg_async.pg_fetchone("SELECT 1", {}) for _ in range(2)]
            try:  # what credit holds do meanwhile: two connections are theirs
                held: list[Any] = await asyncio.gather(*holds)
            except psycopg.OperationalError as exc:  # no connection became free
                held = [exc]
            await holder.rollback()  # the lock goes: the queued misses are read
            return held, [a for wave in await asyncio.gather(*waves) for a in wave]

    before = key_lookup.key_lookup_count()
    held, answers = asyncio.run(flood())
    assert held == [(1,), (1,)], "the key reads took the connections credit holds need"
    assert len(answers) == 300
    assert all(isinstance(answer, NotAuthenticated) for answer in answers)
    assert key_lookup.key_lookup_count() - before < 30  # read in groups, not one by one


def test_a_database_outage_is_djangos_operational_error(clock: Clock, no_orm: None) -> None:
    """What the gateway answers with a retryable 503 (``routing.gateway.app``), as the ORM's:
    the database ends the gateway's connections (a restart) and the next read fails on one."""
    from django.db import OperationalError

    async def run() -> None:
        with pytest.raises(NotAuthenticated):  # read on a connection of the gateway's, kept
            await keys.key_authenticate_async(_unknown_key())
        assert await asyncio.to_thread(gateway_sessions_terminate) >= 1
        with pytest.raises(OperationalError):
            await keys.key_authenticate_async(_unknown_key())

    asyncio.run(run())


def test_a_cancelled_read_answers_every_request_waiting_on_it(
    clock: Clock, settings: Any, no_orm: None
) -> None:
    """A read cancelled in flight (the worker shutting down cancels its tasks) answers the
    requests waiting on it and those queued behind it, a 503 each (none hangs), and the next
    miss reads again."""
    from django.db import OperationalError

    settings.GATEWAY_DB_CONNECTIONS = 2  # one reader: the misses after the first queue behind it

    async def run() -> list[Any]:
        async with _keys_locked():
            misses = await _misses_behind_a_waiting_read(4)
            await asyncio.sleep(0)  # each has run up to its wait for an answer
            for task in asyncio.all_tasks() - {asyncio.current_task(), *misses}:
                task.cancel()  # the reader: all that is left besides the requests
            calls = asyncio.gather(*misses, return_exceptions=True)
            answers = await asyncio.wait_for(calls, 10)
        with pytest.raises(NotAuthenticated):  # read for real now: no such key
            await keys.key_authenticate_async(_unknown_key())
        return answers

    answers = asyncio.run(run())
    assert len(answers) == 5
    assert all(isinstance(answer, OperationalError) for answer in answers), answers


def test_a_flood_of_unknown_keys_never_evicts_the_keys_that_authenticate(
    clock: Clock, no_orm: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "No such key" answers are cached too, and a full cache is emptied whole: with one cache
    for both, random keys (cheap to send) emptied every valid key's entry again and again, so
    every legitimate request missed. They are kept apart; the flood empties only its own."""
    for name in ("_cache", "_unknown"):
        cache = getattr(keys, name, None)
        if cache is not None:
            monkeypatch.setattr(cache, "_max_entries", 8)
    plaintext = key_make(organization_make())
    _authenticate(plaintext)
    for _ in range(20):
        _unknown("rh-live-" + secrets.token_urlsafe(32))
    before = key_lookup.key_lookup_count()
    _authenticate(plaintext)
    assert key_lookup.key_lookup_count() == before  # still cached: no statement


def test_misses_queued_past_the_bound_are_refused_not_queued(
    clock: Clock, settings: Any, no_orm: None
) -> None:
    """While the keys' table is locked, the reader's statement waits and misses queue behind it,
    at most ``QUEUED_MAX`` of them: the next is a 503 (Django's OperationalError) at once, never
    an ever longer queue. Those queued are answered once the lock is gone."""
    from django.db import OperationalError

    settings.GATEWAY_DB_CONNECTIONS = 2  # one reader: every miss after the first waits for it

    async def run() -> list[Any]:
        async with _keys_locked() as holder:
            misses = await _misses_behind_a_waiting_read(key_lookup.QUEUED_MAX)
            one_more = asyncio.ensure_future(keys.key_authenticate_async(_unknown_key()))
            await asyncio.sleep(0)  # each call has run up to its wait for an answer
            assert one_more.done(), "a miss past the bound was queued"
            with pytest.raises(OperationalError, match="waiting to be checked"):
                one_more.result()
            await holder.rollback()  # the lock goes: the queued misses are read
            return await asyncio.gather(*misses, return_exceptions=True)

    answers = asyncio.run(run())
    assert len(answers) == key_lookup.QUEUED_MAX + 1
    assert all(isinstance(answer, NotAuthenticated) for answer in answers)
