"""The gateway's pool for looking up tenants' own hosts (``GATEWAY_DNS_THREADS``) is the only one
its connections wait on, and only own-host attempts use it: with it busy, an own-host attempt
fails at once and the next candidate, a platform provider, still answers."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from routing import resolvers
from routing.egress import tenant_http_client_reset
from routing.gateway.credentials import byok_cache_clear
from routing.models import Provider
from routing.services import provider_key_create
from tests.routing.servers import poll
from tests.routing.world import World, base_catalog, endpoint
from tests.security.stalling_resolver import STALLED, StallingResolver


@pytest.fixture
def busy_pool(world: World, settings: Any, resolver: StallingResolver) -> Iterator[None]:
    """The gateway's pool of one thread, held by a lookup that never answers; the world's
    organization's own host for ``fake-openai`` a name (the platform's ``fake-openai-b`` next)."""
    catalog = base_catalog(world.fake_url)
    catalog["endpoints"].append(endpoint("test/gpt", "fake-openai-b", "gpt-4o-mini", "5", "10"))
    world.catalog(catalog)
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # saved without a lookup
    provider_key_create(organization=world.organization, secret="sk-own-secret-6666",
                        provider=Provider.objects.get(slug="fake-openai"),
                        base_url="http://own-host.example:9/v1")  # fmt: skip
    byok_cache_clear()
    settings.ALLOW_PRIVATE_PROVIDER_URLS = False
    settings.GATEWAY_DNS_THREADS = 1
    settings.URL_CHECK_DNS_TIMEOUT_SECONDS = 20.0
    tenant_http_client_reset()
    holder = threading.Thread(
        target=asyncio.run,
        args=(resolvers.lookup_async(f"hold.{STALLED}", 80, 20.0, -1, threads=1),),
        daemon=True,
    )
    holder.start()
    poll(lambda: resolver.entered == 1)
    yield
    resolver.release.set()
    holder.join(30)
    tenant_http_client_reset()


def _chat(world: World, model: str) -> httpx.Response:
    return httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def test_a_busy_own_host_pool_fails_only_the_own_host_attempt(
    world: World, busy_pool: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="routing.gateway.attempts"):
        answer = _chat(world, "test/gpt")

    assert answer.status_code == 200, answer.text
    assert "upstream fake-openai/test/gpt failed" in caplog.text  # the own host: not looked up
    sent = world.upstream_requests("/v1/chat/completions")
    assert [r["headers"]["authorization"] for r in sent] == ["***0001"]  # the platform's key
    assert "own-host.example" not in str(sent)


def test_platform_connections_never_wait_for_the_own_host_pool(
    world: World, busy_pool: None
) -> None:
    # Only platform providers serve this model: nothing of it is looked up in the busy pool.
    answer = _chat(world, "test/claude")
    assert answer.status_code == 200, answer.text
