"""The gateway's connect-time name lookups (a tenant's own ``base_url`` host) run in
``routing.resolvers``' bounded pool, one unfinished per organization, within
``URL_CHECK_DNS_TIMEOUT_SECONDS``. Before, each ran in the event loop's default executor: one
organization's stalled names (a connection each) took its every thread, and another
organization's lookups queued behind them until their connect timeout."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import httpx
from django.test import override_settings

from routing import egress
from routing.tenant_slots import ORGANIZATION
from tests.security.stalling_resolver import STALLED, StallingResolver, resolver

__all__ = ["resolver"]

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

    # Before: a ConnectTimeout, its lookup queued behind organization 1's in the default executor.
    assert isinstance(other, httpx.ConnectError), repr(other)
    assert "not a public address" in str(other)
    # Organization 1 held one lookup thread; its other connections waited for that lookup and
    # timed out (before: every one of them took a thread of its own).
    assert resolver.entered == 1
    assert all(isinstance(exc, httpx.ConnectTimeout) for exc in stalled), stalled
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
