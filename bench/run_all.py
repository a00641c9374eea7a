"""``make bench``: every benchmark in one run; writes bench/results.json and README's table.

    python -m bench.run_all [--duration 30] [--requests 500] [--workers N] [--no-readme]
                            [--datasets ../shared/datasets] [--big-folds 3] [--no-routing]

Gateway overhead (bench.gateway) against the fake upstream and LiteLLM's proxy, the added
latency of ``router/<slug>`` over a plain model through the same production server, and the
settlement check (usage records and ledger after the run); then routing decision latency and
training throughput from ``bench/router.py`` (``routing_benchmarks``), after every server has
stopped so the training runs do not share the machine with the gateways; last, what checking a
stream's chunks costs beside a plain ``json.loads`` (``bench.chunk_checks``, in process). Numbers
are written, never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import chunk_checks, gateway, litellm_proxy, report, select_endpoint
from bench import router as router_bench

RESULTS = Path(__file__).resolve().parent / "results.json"
DATASETS = gateway.REPO.parent / "shared" / "datasets"  # ../shared/datasets from the repo


def routing_benchmarks(datasets: Path, big_folds: int, rows: tuple[int, ...]) -> dict[str, Any]:
    """Routing decision latency (2 and 11 candidates) and training throughput (1k, 14k, 100k
    rows by default); ``{"skipped": why}`` when the datasets are not there."""
    try:
        return router_bench.routing_benchmarks(datasets, big_folds=big_folds, log=gateway.log,
                                               training_rows=rows)  # fmt: skip
    except Exception as exc:  # a failed routing bench must not lose the gateway numbers
        return {"error": f"{type(exc).__name__}: {exc}"}


def select_benchmark(datasets: Path, workers: int) -> dict[str, Any]:
    """``select`` through the lean gateway path beside the DRF view (``bench.select_endpoint``)."""
    if not (datasets / "routerbench_arc_challenge_train.csv").exists():
        return {"skipped": f"routerbench_arc_challenge_train.csv not found in {datasets}"}
    try:
        options = argparse.Namespace(
            datasets=datasets, workers=workers, requests=1000,
            database=select_endpoint.DATABASE, redis_url=select_endpoint.REDIS_URL,
        )  # fmt: skip
        return select_endpoint.run(options)
    except Exception as exc:  # a failed select bench must not lose the other numbers
        return {"error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="RouterHub benchmarks (loopback only).")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds per gateway throughput run (default 30)")  # fmt: skip
    parser.add_argument("--direct-duration", type=float, default=None,
                        help="seconds per upstream-direct throughput run (default min(10, duration))")  # fmt: skip
    parser.add_argument("--requests", type=int, default=500, help="sequential requests at c=1")
    parser.add_argument("--stream-requests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=gateway.Options.workers)
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite README.md")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--datasets", type=Path, default=DATASETS,
                        help="routellm_mmlu.csv and routerbench_arc_challenge_*.csv (default ../shared/datasets)")  # fmt: skip
    parser.add_argument("--big-folds", type=int, default=3,
                        help="cross-validation folds of the 100k-row training run (default 3; the others use 5)")  # fmt: skip
    parser.add_argument("--training-rows", default="1000,14000,100000",
                        help="training sizes, comma-separated (500000 = DATASET_MAX_ROWS: ~1 h more)")  # fmt: skip
    parser.add_argument("--no-routing", action="store_true",
                        help="skip routing decision latency and training throughput")  # fmt: skip
    parser.add_argument("--no-litellm", action="store_true",
                        help="measure RouterHub without LiteLLM's proxy beside it")  # fmt: skip
    parser.add_argument("--no-select", action="store_true",
                        help="skip the select endpoint (lean gateway path vs DRF view)")  # fmt: skip
    args = parser.parse_args(argv)
    started = time.monotonic()
    opts = gateway.Options(
        duration=args.duration,
        direct_duration=args.direct_duration or min(10.0, args.duration),
        requests=args.requests,
        stream_requests=args.stream_requests,
        workers=args.workers,
        litellm=not args.no_litellm,
    )
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": report.machine() | {"loadavg_at_start": os.getloadavg()},
    }
    results["gateway"] = gateway.gateway_benchmarks(opts)
    results["versions"] = report.versions(litellm_proxy.venv_python())
    results["summary"] = report.summarize(results["gateway"])
    results["routing"] = (
        {"skipped": "--no-routing"}
        if args.no_routing
        else routing_benchmarks(
            args.datasets, args.big_folds, tuple(int(n) for n in args.training_rows.split(","))
        )
    )
    results["select"] = (
        {"skipped": "--no-select"}
        if args.no_select
        else select_benchmark(args.datasets, args.workers)
    )
    results["chunk_checks"] = chunk_checks.run()  # in process, after every server stopped
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    report.write_json(results, args.output)
    print()
    print(report.table(results))
    print()
    print(report.settlement_text(results))
    print()
    print(report.keys_text(results))
    print()
    print(report.routing_text(results))
    print()
    print(report.select_text(results))
    print()
    print(chunk_checks.text(results["chunk_checks"]))
    print(f"\nLiteLLM database mode: {results['gateway']['litellm']['database']} "
          f"({results['gateway']['litellm']['note']})")  # fmt: skip
    if not args.no_readme:
        report.write_readme(results)
    print(f"\nwrote {args.output} in {results['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
