"""Shared fixtures. Service-backed tests skip on a laptop without them and fail under REQUIRE_SERVICES=1."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("ROUTERHUB_ENV", "test")


def _httpx_default_ssl_context_shared() -> None:
    """Every httpx client builds its SSL context when it is made, TLS or not: loading the CA
    bundle costs 40 ms of CPU on an idle 2-core machine and 200 ms on a loaded one. The suite
    makes thousands of clients (each ``httpx.post``, each ``openai.OpenAI`` and
    ``anthropic.Anthropic``, per request in many helpers) to talk plain HTTP to its own servers,
    so the tests' process builds each library's default context once and shares it. A context is
    configuration, safe to share between clients (nothing in the suite speaks TLS, where the
    connection pool sets ALPN protocols on it); any other ``verify`` or a client certificate
    builds its own, as before. ``httpx2`` is the fork the openai and anthropic SDKs use."""
    import functools
    import importlib

    for name in ("httpx._transports.default", "httpx2._transports.default"):
        try:
            transports = importlib.import_module(name)
        except ImportError:
            continue
        build = transports.create_ssl_context

        @functools.cache
        def default(trust_env: bool, env: tuple[str | None, ...], build: Any = build) -> Any:
            return build(verify=True, trust_env=trust_env)

        def create_ssl_context(
            verify: Any = True,
            cert: Any = None,
            trust_env: bool = True,
            build: Any = build,
            default: Any = default,
        ) -> Any:
            if verify is True and cert is None:
                env = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
                return default(trust_env, env)
            return build(verify=verify, cert=cert, trust_env=trust_env)

        transports.create_ssl_context = create_ssl_context


_httpx_default_ssl_context_shared()

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def service_missing(reason: str) -> None:
    """Skip with a clear reason, or fail when CI requires every service-backed test to run."""
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def require_postgres() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        service_missing(
            "needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/routerhub"
        )


def require_redis() -> None:
    from django.conf import settings

    if not settings.REDIS_URL:
        service_missing("needs Redis: set REDIS_URL=redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> Iterator[None]:
    from accounts.keys import key_cache_clear

    key_cache_clear()
    yield
    key_cache_clear()


@pytest.fixture(autouse=True)
def _redis_not_backed_off() -> Iterator[None]:
    """No test inherits the rate limiter's back-off from one that pointed it at a dead Redis:
    the next would admit uncounted for RATE_LIMIT_REDIS_BACKOFF_SECONDS."""
    yield
    limits_redis = sys.modules.get("routing.gateway.limits_redis")
    if limits_redis is not None:
        limits_redis._Outage.since, limits_redis._Outage.retry_at = None, 0.0
        limits_redis._Outage.probing_since = None


@pytest.fixture
def one_rate_limit_window(monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Every rate-limit count of the test in one window, 30 s before its end: a minute's end
    mid-test would start a fresh window and admit past the limit (seen: 2,500 of 2,500 admitted
    at rpm 2,000, and a playground 429 that never came). The window is a random one far ahead,
    so no counters another test or run left in Redis share it. Returns (window, seconds left)."""
    import secrets

    from routing.gateway import limits

    frozen = (limits._window()[0] + 1_000_000 + secrets.randbelow(1_000_000), 30)
    monkeypatch.setattr(limits, "_window", lambda: frozen)
    return frozen


@pytest.fixture
def tenants(db: None):  # type: ignore[no-untyped-def]
    from tests.factories import tenants_make

    return tenants_make()


def pytest_configure(config: pytest.Config) -> None:
    """Transactional tests end by emptying the tables they touched (``tests/db_flush.py``)."""
    from tests.db_flush import install

    install()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Capture every log record of the session, to be scanned for secrets and prompts."""
    from tests.log_hygiene import capture_start

    capture_start()


@pytest.fixture(scope="session", autouse=True)
def _empty_usage_stream() -> None:
    """The session owns its Redis database: start without another run's usage drafts, which
    the in-process settler would try to settle against this session's database (and which the
    tests that wait for the stream to drain would wait for)."""
    from django.conf import settings

    if not settings.REDIS_URL:
        return
    import redis
    from django.core.cache import cache

    from billing.outbox import STREAM
    from billing.outbox_entries import DEAD_STREAM
    from routerhub.redis_clients import redis_client

    client = redis_client(settings.REDIS_URL)
    try:
        client.delete(STREAM, DEAD_STREAM)
        # Nor another run's cached answers (provider stats, cascade reports): they name rows by
        # primary keys, which the fresh test database hands out again.
        cache.clear()
    except redis.RedisError:
        pass  # no Redis here: the tests that need it skip (or fail) with their own reason
    finally:
        client.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.log_hygiene import capture_stop

    capture_stop(keep=exitstatus != 0)


@pytest.hookimpl(trylast=True)  # after pytest-django's own reordering
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running in the main thread
    for the rest of the session, which code that calls ``asyncio.run`` cannot share. After them,
    the scan of the whole session's logs (``last`` marker)."""
    items.sort(
        key=lambda item: (
            item.get_closest_marker("last") is not None,
            item.get_closest_marker("browser") is not None,
        )
    )


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Before the test database is dropped, end the sessions servers left behind: a closed
    connection's backend can outlive the client by a few milliseconds, and PostgreSQL refuses
    to drop a database that still has sessions."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
