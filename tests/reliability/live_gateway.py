"""The gateway as production runs it, against the test database: gunicorn with two uvicorn
workers (``deploy/gunicorn.conf.py``, started by ``bench.gateway.start_routerhub``) and the fake
upstream as its own process (``bench.gateway.start_fake``).

Tests arrange organizations, keys and the catalog with the ORM and factories (they commit:
``transaction=True``), then talk to the servers over real HTTP; both workers settle usage
through the Redis stream of the test's own Redis database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from bench.gateway import routerhub_env, start_fake, start_routerhub
from bench.procs import Proc, http
from billing.outbox import GROUP, STREAM
from tests.conftest import require_postgres, require_redis
from tests.log_hygiene import subprocess_log
from tests.processes import database_url
from tests.routing.servers import poll
from tests.routing.world import PLATFORM_KEYS

WORKERS = 2


def redis_client() -> Any:
    from routerhub.redis_clients import redis_client

    return redis_client(settings.REDIS_URL)


@dataclass
class LiveGateway:
    url: str
    fake_url: str
    server: Proc
    fake: Proc

    def upstream_requests(self) -> list[dict[str, Any]]:
        """Every request the fake upstream received, in arrival order."""
        status, body = http(f"{self.fake_url}/_requests", timeout=30)
        assert status == 200, body[:300]
        return list(json.loads(body)["requests"])

    def settlers(self) -> set[str]:
        """Consumers of the usage stream (the dedicated settler's, or one per worker that settled
        something under ``USAGE_SETTLER=worker``)."""
        client = redis_client()
        try:
            return {c["name"].decode() for c in client.xinfo_consumers(STREAM, GROUP)}
        finally:
            client.close()

    def stop(self) -> int | None:
        """SIGTERM: workers finish what is in flight and settle what they hold, then exit."""
        self.server.stop(timeout=60)
        return self.server.popen.returncode

    def log(self) -> str:
        return self.server.log_tail(60)


@pytest.fixture
def start_live_gateway(
    transactional_db: None, tmp_path: Path
) -> Iterator[Callable[..., LiveGateway]]:
    """``start(catalog, **env)`` → a running fake upstream and two-worker gateway, stopped at
    teardown. ``catalog(fake_url)`` writes the catalog once the fake upstream listens and before
    the workers start (so it is what they first load); ``env`` overrides settings (e.g.
    ``GATEWAY_FIRST_BYTE_TIMEOUT="2"``).
    """
    require_postgres()
    require_redis()
    procs: list[Proc] = []
    # The servers' logs go where the session's log scan reads them (tests/log_hygiene.py).
    reserved = subprocess_log("live-gateway", tmp_path)
    reserved.touch()
    out = reserved.with_suffix("")
    out.mkdir()

    def start(catalog: Callable[[str], None], **env: str) -> LiveGateway:
        fake, fake_url = start_fake(0, out)
        procs.append(fake)
        catalog(fake_url)
        client = redis_client()
        client.delete(STREAM)  # drafts of an earlier run would name rows that no longer exist
        client.close()
        server_env = routerhub_env(fake_url) | {
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            # Keys made by the factories in this process must authenticate in the servers.
            "API_KEY_PEPPER": settings.API_KEY_PEPPER,
            "ROUTERHUB_VAR_DIR": str(tmp_path / "var"),
            "CELERY_BROKER_URL": "memory://",
            **PLATFORM_KEYS,
            **env,
        }
        server, url = start_routerhub(server_env, WORKERS, out)
        procs.append(server)
        # /healthz answered by one worker; load must find both up, or one would take it all.
        poll(lambda: server.log_tail(200).count("Application startup complete") >= WORKERS,
             timeout=60)  # fmt: skip
        return LiveGateway(url=url, fake_url=fake_url, server=server, fake=fake)

    yield start
    # Servers first: their database connections must be gone before the tables are flushed.
    for proc in reversed(procs):
        proc.stop()
