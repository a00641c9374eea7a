"""A one-minute soak (``make soak`` runs ten): steady load on the production server, as
``bench.soak`` measures it, with the verdicts asserted. A leak detector, not a timing test: the
bound on memory growth is generous and nothing about speed is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import Options, report, soak
from tests.reliability.stack import PrivatePostgres, PrivateRedis

pytestmark = [pytest.mark.services, pytest.mark.timeout(400)]


def test_a_minute_of_steady_load_has_no_errors_no_leak_and_settlement_keeps_up(
    tmp_path: Path,
) -> None:
    postgres = PrivatePostgres().start()
    redis = PrivateRedis(tmp_path / "redis", appendonly=False)
    try:
        redis.start()
        result = soak(
            Options(
                duration=60,
                warmup=10,
                concurrency=8,
                workers=2,
                database_url=postgres.url("routerhub_soak"),
                redis_url=redis.url(),
                out=tmp_path / "soak",
            )
        )
    finally:
        redis.stop()
        postgres.stop()
    print(report(result))

    assert result["requests"] > 0
    # No 5xx, no 4xx, no transport errors (refused, reset, timed out) over the whole minute.
    assert result["errors"] == 0, result["statuses"]
    assert set(result["statuses"]) == {"200"}  # loadgen reports statuses as JSON keys
    # Memory: no worker grew by half after warm-up, and none was replaced (which would hide it).
    assert not result["workers_replaced"]
    assert result["memory"]["max_growth"] is not None
    assert result["memory"]["max_growth"] < 0.5, result["memory"]
    # Settlement kept up: once the stream drained, one succeeded usage record per 200 the load
    # generator received, the ledger equal to the balance, no hold left.
    settlement = result["settlement"]
    assert settlement["succeeded_records"] == settlement["ok_responses"]
    assert settlement["ledger_matches_balance"]
    assert set(settlement["reservations"]) == {"settled"}
