"""The benchmark's added latency at c=1 (``bench.loadgen.added_ms``, ``bench.gateway.c1_order``,
``bench.report``): a gateway's percentile against the median of several direct runs, so that
one direct run with a slow tail does not move it. Pure functions over sample lists; no servers."""

from __future__ import annotations

import random

import pytest

from bench import report
from bench.gateway import DIRECT_RUNS, Target, c1_order
from bench.loadgen import added_ms

REQUESTS = 500  # make bench's c=1 run: its p99 is the 5th-slowest request


def run_ms(*, seed: int, tail_ms: float, tail: int) -> list[float]:
    """One c=1 run of ``REQUESTS`` latencies (ms): 0.15-0.45 ms, and ``tail`` requests at
    ``tail_ms`` plus up to 0.05 ms (a tail of 5 or more sets the p99)."""
    rng = random.Random(seed)
    body = [rng.uniform(0.15, 0.45) for _ in range(REQUESTS - tail)]
    return body + [tail_ms + rng.uniform(0, 0.05) for _ in range(tail)]


GATEWAY = run_ms(seed=0, tail_ms=3.2, tail=8)  # RouterHub: client p99 3.2-3.25 ms
TYPICAL = [run_ms(seed=s, tail_ms=0.55, tail=6) for s in (1, 2, 3)]  # direct p99 ~0.55-0.6
OUTLIER = run_ms(seed=4, tail_ms=2.35, tail=9)  # the 06:13 run's direct p99: 2.35 ms


@pytest.mark.parametrize("position", range(DIRECT_RUNS))
def test_one_outlier_direct_run_does_not_move_the_added_p99(position: int) -> None:
    direct = list(TYPICAL)
    direct[position] = OUTLIER

    added = added_ms(GATEWAY, direct, 99)
    typical = added_ms(GATEWAY, TYPICAL, 99)

    assert added is not None and typical is not None
    assert abs(added - typical) < 0.1
    assert 2.55 < added < 2.75  # ~3.2 minus ~0.57, never 3.2 minus 2.35


def test_the_added_percentile_is_the_gateway_percentile_minus_the_median_of_the_runs() -> None:
    direct = [[0.2] * 99 + [p99] for p99 in (0.5, 0.6, 2.35)]  # p99 of 100: the slowest

    assert added_ms([1.0] * 99 + [3.0], direct, 99) == pytest.approx(3.0 - 0.6)
    assert added_ms([1.0] * 100, direct, 50) == pytest.approx(1.0 - 0.2)


def test_no_samples_means_no_added_latency() -> None:
    assert added_ms([], TYPICAL, 99) is None
    assert added_ms(GATEWAY, [[], []], 99) is None


def test_the_direct_upstream_runs_before_and_after_every_gateway() -> None:
    direct, routerhub, litellm = (Target(n, "", "", {}, 0) for n in ("direct", "rh", "ll"))

    both = [t.name for t in c1_order([direct, routerhub, litellm], flip=False)]
    alone = [t.name for t in c1_order([direct, routerhub], flip=False)]

    assert both == ["direct", "rh", "direct", "ll", "direct"]
    assert alone == ["direct", "rh", "direct", "direct"]
    assert alone.count("direct") == DIRECT_RUNS


def test_the_report_shows_the_added_p99_and_the_client_p99_beside_it() -> None:
    direct_runs = [{"p50": 0.2, "p90": 0.3, "p99": p99} for p99 in (0.52, 0.6, 2.35)]
    latency = {"latency_ms": {"p50": 1.5, "p90": 2.0, "p99": 3.23},
               "added_ms": {"p50": 1.3, "p90": 1.7, "p99": 2.63}}  # fmt: skip
    gateway = {
        "options": {"latencies_ms": [0], "concurrencies": []},
        "targets": {
            "direct": {
                "0ms": {"latency": {"latency_ms": {"p50": 0.2, "p99": 0.6}, "runs": direct_runs}}
            },
            "routerhub": {"0ms": {"latency": latency}},
            "litellm": {},
        },
    }
    summary = report.summarize(gateway)
    rows = report.table({"summary": summary, "gateway": gateway}).splitlines()

    assert summary["routerhub"]["added_p99_ms@0ms"] == 2.63
    assert summary["routerhub"]["client_p99_ms@0ms"] == 3.23
    assert summary["direct"]["latency_p99_runs_ms@0ms"] == [0.52, 0.6, 2.35]
    assert "| added latency p99, c=1, upstream 0 ms (ms) |  | 2.63 | – | – |" in rows
    assert "| client latency p99, c=1, upstream 0 ms (ms) | 0.60 | 3.23 | – | – |" in rows
