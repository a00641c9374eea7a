"""PostgreSQL crashes under load and restarts: requests fail fast with a retryable 503 in the API
error format, nothing is half written, and the same gateway processes serve again once it is back.

Requests admitted before the crash are answered and their usage waits in the Redis stream until
the database returns; each pool thread drops the connection the crash broke (``routerhub.db``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.procs import tree
from tests.reliability.stack import (
    Load,
    PrivatePostgres,
    PrivateRedis,
    gateway_running,
    private_services,
    settled,
)
from tests.routing.servers import SETTLE_TIMEOUT, poll

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[PrivatePostgres, PrivateRedis]]:
    with private_services(tmp_path / "redis", appendonly=False) as services:
        yield services


def test_a_postgres_crash_answers_503_writes_nothing_half_and_recovers_without_a_restart(
    services: tuple[PrivatePostgres, PrivateRedis], tmp_path: Path
) -> None:
    postgres, redis = services
    database = postgres.url("routerhub")
    with (
        gateway_running(tmp_path / "gateway", database_url=database, redis_url=redis.url()) as gw,
        Load(gw, concurrency=4) as load,
        httpx.Client(timeout=30) as client,
    ):
        workers = set(tree(gw.server.pid))
        poll(lambda: load.statuses()[200] >= 30, timeout=30)

        postgres.crash()
        outage_from = load.count()
        poll(lambda: load.statuses(outage_from)[503] >= 50, timeout=30)
        refused = gw.chat(client)
        during = load.statuses(outage_from)

        postgres.start()
        restarted_from = load.count()
        poll(lambda: load.statuses(restarted_from)[200] >= 60, timeout=30)
        steady_from = load.count()
        poll(lambda: load.count() - steady_from >= 200, timeout=30)
        load.stop()

        served = set(load.ok_ids())
        books = settled(redis.url(), database, served, timeout=SETTLE_TIMEOUT)
        assert set(tree(gw.server.pid)) == workers, "the gateway's workers were replaced"

    # While the database is down: 503 in the API error format, with Retry-After; no 500s and no
    # dropped connections. (A few requests reserved just before the crash still get their 200.)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["x-request-id"]
    error = refused.json()["error"]
    assert error["code"] == 503
    assert error["type"] == "service_unavailable"
    assert error["message"]
    assert set(error) == {"code", "type", "message", "param", "metadata"}
    assert set(during) <= {200, 503}, during
    assert {e for status, _, e in load.since(outage_from) if status == 503} == {
        "service_unavailable"
    }

    # Served again after the restart: the first request of a pool thread may still meet the
    # connection the crash broke (a 503), after that every thread has reconnected.
    assert set(load.statuses(restarted_from)) <= {200, 503}
    steady = load.statuses(steady_from)
    assert set(steady) == {200}, steady

    # Nothing half written: every 200 has its usage record and charge, every charge its record,
    # no hold is left behind, the ledger is the balance.
    missing = served - set(books.records)
    assert not missing, f"{len(missing)} served requests have no usage record"
    assert {books.records[g] for g in served} == {"succeeded"}
    assert books.records_without_charge == 0
    assert books.charges_without_record == 0
    assert books.held == 0
    assert books.reserved == 0
    assert books.ledger_sum == books.balance
