"""Gateway test fixtures: the RouterHub ASGI app and the fake upstream, both over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require_redis
from tests.log_hygiene import prompts_register_from
from tests.routing.servers import LeavesWhen, ServerThread, gateway_idle, usage_stream_settled
from tests.routing.world import PLATFORM_KEYS, World, world_make
from tests.security.stalling_resolver import resolver

__all__ = ["resolver"]  # the fixture (tests/security's), for the DNS tests here


@pytest.fixture(scope="session")
def fake_server() -> Iterator[ServerThread]:
    from routing.fake_upstream.app import FakeUpstream

    server = ServerThread(FakeUpstream()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway_server() -> Iterator[ServerThread]:
    from routerhub.asgi import application

    server = ServerThread(application).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def leaving() -> Iterator[tuple[ServerThread, LeavesWhen]]:
    """The gateway served behind ``LeavesWhen``: a client that leaves, or a server that cancels
    the request's handler, at a moment the test chooses."""
    from routerhub.asgi import application

    app = LeavesWhen(application)
    server = ServerThread(app, lifespan="off").start()
    yield server, app
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_gateway_state() -> Iterator[None]:
    from routing.gateway import health
    from routing.gateway.catalog_cache import catalog_cache_clear
    from routing.gateway.credentials import byok_cache_clear
    from routing.pipeline_rows import pipeline_cache_clear
    from routing.routers import router_cache_clear

    resets = (
        health.health_reset,
        catalog_cache_clear,
        byok_cache_clear,
        router_cache_clear,
        pipeline_cache_clear,
    )
    for reset in resets:
        reset()
    yield
    for reset in resets:
        reset()


@pytest.fixture
def world(
    transactional_db: None, settings, fake_server: ServerThread, gateway_server: ServerThread
) -> World:  # type: ignore[no-untyped-def]
    settings.PROVIDER_API_KEYS = dict(PLATFORM_KEYS)
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 2.0
    settings.GATEWAY_CONNECT_TIMEOUT = 2.0
    redis_url = settings.REDIS_URL
    settings.REDIS_URL = ""  # in-process limiter unless a test opts into Redis (world.redis_url)
    fake_server.server.config.app.requests.clear()
    world = world_make(gateway_server.url, fake_server.url, fake_server.server.config.app)
    world.redis_url = redis_url
    yield world
    # Settlement runs after the response is sent: let the gateway finish before the database
    # is flushed under it. Each step runs even if one before it failed: a settler left running
    # or a prompt left unregistered would fail later tests too.
    try:
        gateway_idle()
    finally:
        try:
            usage_stream_settled(redis_url)  # and stops the settler a test's Redis use started
        finally:
            # What this test sent upstream is prompt text: the session's log scan looks for it.
            for request in list(fake_server.server.config.app.requests):
                prompts_register_from(request.get("body"))


@pytest.fixture
def call_min(monkeypatch: pytest.MonkeyPatch) -> float:
    """No call starts with under 3 s of the request's deadline left (``CALL_MIN_SECONDS``, 0.5 s
    in production): a deadline test's call not started has seconds of margin on a loaded host."""
    from routing.gateway import attempts

    monkeypatch.setattr(attempts, "CALL_MIN_SECONDS", 3.0)
    return 3.0


@pytest.fixture(params=["redis", "in-process"])
def limiter(request: pytest.FixtureRequest, settings: Any,
            one_rate_limit_window: tuple[int, int]) -> Iterator[str]:  # fmt: skip
    """The rate limiter a test runs against, Redis's then the in-process one, with no lease
    left from another test (``limits._leases``)."""
    from routing.gateway import limits

    if request.param == "redis" and not settings.REDIS_URL:
        require_redis()
    if request.param == "in-process":
        settings.REDIS_URL = ""
    limits._leases.clear()
    yield request.param
    limits._leases.clear()
