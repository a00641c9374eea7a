"""The gateway's connect-time name lookups (a tenant's own ``base_url`` host) run in
``routing.resolvers``' bounded pool, one unfinished per organization, within
``URL_CHECK_DNS_TIMEOUT_SECONDS``. Before, each ran in the event loop's default executor: one
organization's stalled names (a connection each) took its every thread, and another
organization's lookups queued behind them until their connect timeout."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any

import httpx
import pytest
from django.test import override_settings

from routerhub.domain import InvalidInput
from routing import egress, resolvers
from routing.tenant_slots import ORGANIZATION
from tests.security.stalling_resolver import SLOW, STALLED, StallingResolver

EXECUTOR_THREADS = 4  # the default executor's size here (min(32, CPUs + 4) in production)


async def _post(organization: int, host: str, timeout: float) -> Exception:
    client = egress.tenant_http_client()
    try:
        await client.post(
            f"http://{host}:9/v1/chat/completions",
            content=b"{}",
            timeout=timeout,
            extensions={ORGANIZATION: organization},
        )
    except Exception as exc:
        return exc
    raise AssertionError("the request was answered")


async def _stalled_tenant_then_another(resolver: StallingResolver) -> list[Exception]:
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(EXECUTOR_THREADS)
    )
    stalled = [
        asyncio.create_task(_post(1, f"n{i}.{STALLED}", timeout=1.0))
        for i in range(EXECUTOR_THREADS + 2)
    ]
    deadline = time.monotonic() + 10
    while resolver.entered == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    # localhost answers at once; its address is then refused (not public): the lookup ran.
    other = await _post(2, "localhost", timeout=3.0)
    return [other, *await asyncio.gather(*stalled)]


@override_settings(
    ALLOW_PRIVATE_PROVIDER_URLS=False,
    GATEWAY_TENANT_MAX_CONNECTIONS=16,
    URL_CHECK_DNS_TIMEOUT_SECONDS=5.0,
)
def test_one_tenants_stalled_names_leave_other_tenants_lookups_alone(
    resolver: StallingResolver,
) -> None:
    egress.tenant_http_client_reset()
    try:
        other, *stalled = asyncio.run(_stalled_tenant_then_another(resolver))
    finally:
        egress.tenant_http_client_reset()

    # Before: a ConnectError with no cause in its message ("cannot resolve localhost: ", the
    # default executor's TimeoutError), its lookup queued behind organization 1's.
    assert isinstance(other, httpx.ConnectError), repr(other)
    assert "not a public address" in str(other)
    # Organization 1 held GATEWAY_DNS_PER_ORGANIZATION (2) lookup threads, which timed out; its
    # other connections failed at once naming them (before: every one of them took a thread).
    assert resolver.entered == 2
    timed_out = [exc for exc in stalled if isinstance(exc, httpx.ConnectTimeout)]
    refused = [exc for exc in stalled if not isinstance(exc, httpx.ConnectTimeout)]
    assert len(timed_out) == 2, stalled
    assert all(isinstance(exc, httpx.ConnectError) for exc in refused), refused
    assert all("for this organization has not finished" in str(exc) for exc in refused), refused
    assert not resolver.finished.is_set()


@override_settings(ALLOW_PRIVATE_PROVIDER_URLS=False, URL_CHECK_DNS_TIMEOUT_SECONDS=0.3)
def test_a_connect_time_lookup_ends_at_the_dns_timeout_with_a_clear_error(
    resolver: StallingResolver,
) -> None:
    egress.tenant_http_client_reset()
    try:
        # A connect timeout of 10 s: the lookup's own bound (0.3 s) ends it.
        error = asyncio.run(_post(1, STALLED, timeout=10.0))
        again = asyncio.run(_post(2, STALLED, timeout=10.0))
    finally:
        egress.tenant_http_client_reset()

    assert isinstance(error, httpx.ConnectTimeout)
    assert f"resolving {STALLED} took longer than 0.3 s" in str(error)
    # The name is remembered as stalled: the next connection to it fails at once, no thread.
    assert isinstance(again, httpx.ConnectTimeout)
    assert "timed out moments ago" in str(again)
    assert resolver.entered == 1


async def _burst(count: int) -> list[Exception]:
    return await asyncio.gather(*[_post(1, SLOW, timeout=10.0) for _ in range(count)])


@override_settings(
    ALLOW_PRIVATE_PROVIDER_URLS=False,
    GATEWAY_TENANT_MAX_CONNECTIONS=40,
    URL_CHECK_DNS_TIMEOUT_SECONDS=2.0,
)
def test_a_burst_to_a_healthy_name_shares_its_lookup_and_stalls_nothing(
    resolver: StallingResolver,
) -> None:
    """30 connections of one organization to a name that answers in 0.2 s, within a 2 s bound.
    Before: each waited for the one before it and then ran its own lookup with what was left
    (30 x 0.2 s), the last ones timed out and marked the healthy name stalled for everyone."""
    egress.tenant_http_client_reset()
    try:
        burst = asyncio.run(_burst(30))
        other = asyncio.run(_post(2, SLOW, timeout=10.0))
    finally:
        egress.tenant_http_client_reset()

    # Every lookup answered (127.0.0.1), so every connection was then refused as not public.
    assert all("not a public address" in str(exc) for exc in [*burst, other]), [*burst, other]
    assert resolver.slow < 30  # shared, not one lookup each


async def _failover(resolver: StallingResolver) -> list[Exception]:
    first = asyncio.create_task(_post(1, STALLED, timeout=10.0))
    await _until(lambda: resolver.entered == 1)
    innocent = await _post(1, "localhost", timeout=3.0)  # its other own host, a name that answers
    second = asyncio.create_task(_post(1, f"b.{STALLED}", timeout=10.0))
    await _until(lambda: resolver.entered == 2)
    third = await _post(1, f"c.{STALLED}", timeout=10.0)
    return [innocent, third, *await asyncio.gather(first, second)]


async def _until(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


@override_settings(
    ALLOW_PRIVATE_PROVIDER_URLS=False,
    GATEWAY_TENANT_MAX_CONNECTIONS=16,
    URL_CHECK_DNS_TIMEOUT_SECONDS=5.0,
)
def test_an_organizations_failover_host_is_not_blamed_for_its_stalled_one(
    resolver: StallingResolver,
) -> None:
    egress.tenant_http_client_reset()
    try:
        innocent, third, *stalled = asyncio.run(_failover(resolver))
    finally:
        egress.tenant_http_client_reset()

    # Before: it waited behind stalled.example's lookup for its whole 3 s and was reported as
    # "resolving localhost took longer than 3 s".
    assert isinstance(innocent, httpx.ConnectError), repr(innocent)
    assert "not a public address" in str(innocent)
    # Two lookups of its own unfinished: a third name fails at once, naming them (no thread).
    assert isinstance(third, httpx.ConnectError) and not isinstance(third, httpx.ConnectTimeout)
    assert f"earlier lookup of {STALLED}, b.{STALLED} for this organization" in str(third)
    assert resolver.entered == 2
    assert all(isinstance(exc, httpx.ConnectTimeout) for exc in stalled), stalled


async def _others_stalled_then_mine(resolver: StallingResolver) -> Exception:
    stalled = [
        asyncio.create_task(_post(org, f"{org}-{i}.{STALLED}", timeout=10.0))
        for org in range(1, 5)
        for i in range(2)
    ]
    await _until(lambda: resolver.entered == 4 + 8)
    mine = await _post(5, "localhost", timeout=3.0)
    for task in stalled:
        task.cancel()
    await asyncio.gather(*stalled, return_exceptions=True)
    return mine


@override_settings(
    ALLOW_PRIVATE_PROVIDER_URLS=False,
    GATEWAY_TENANT_MAX_CONNECTIONS=16,
    URL_CHECK_DNS_TIMEOUT_SECONDS=5.0,
)
def test_stalled_url_checks_and_four_tenants_stalled_names_leave_a_connection_alone(
    resolver: StallingResolver,
) -> None:
    # Four organizations' save-time checks hold every thread of the save-time pool...
    for org in range(1, 5):
        with pytest.raises(TimeoutError):
            resolvers.lookup(f"save-{org}.{STALLED}", 80, 0.1, org)
    egress.tenant_http_client_reset()
    try:  # ...and the same four hold 2 gateway lookups each.
        mine = asyncio.run(_others_stalled_then_mine(resolver))
    finally:
        egress.tenant_http_client_reset()

    # Before: one 4-thread pool for both, so "every one of the 4 name resolver threads is busy".
    assert isinstance(mine, httpx.ConnectError), repr(mine)
    assert "not a public address" in str(mine)


@override_settings(ALLOW_PRIVATE_PROVIDER_URLS=False, URL_CHECK_DNS_TIMEOUT_SECONDS=5.0)
def test_a_url_save_is_not_refused_for_the_gateways_unfinished_lookup(
    resolver: StallingResolver,
) -> None:
    async def stall_and_save() -> None:
        connecting = asyncio.create_task(_post(1, STALLED, timeout=10.0))
        await _until(lambda: resolver.entered == 1)
        # Before: 429 "this organization's earlier URL check (resolving stalled.example) …",
        # though no URL check of the organization was under way.
        with pytest.raises(InvalidInput, match="not a public address"):
            await asyncio.to_thread(egress.base_url_check, "https://localhost/v1", tenant=1)
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)

    egress.tenant_http_client_reset()
    try:
        asyncio.run(stall_and_save())
    finally:
        egress.tenant_http_client_reset()


@override_settings(ALLOW_PRIVATE_PROVIDER_URLS=False, URL_CHECK_DNS_TIMEOUT_SECONDS=0.3)
def test_a_stalled_name_whose_lookup_then_answers_is_looked_up_again(
    resolver: StallingResolver,
) -> None:
    egress.tenant_http_client_reset()
    try:
        stalled = asyncio.run(_post(1, STALLED, timeout=10.0))
        resolver.release.set()  # the abandoned lookup answers after all
        assert resolver.finished.wait(10)
        deadline = time.monotonic() + 10
        while resolvers._Gateway.running and time.monotonic() < deadline:
            time.sleep(0.01)
        again = asyncio.run(_post(2, STALLED, timeout=10.0))
    finally:
        egress.tenant_http_client_reset()

    assert "took longer than 0.3 s" in str(stalled)
    # Before: "timed out moments ago" for a minute, though the name answers now.
    assert "not a public address" in str(again), repr(again)
