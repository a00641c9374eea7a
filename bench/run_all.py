"""``make bench``: every benchmark in one run; writes bench/results.json and README's table.

    python -m bench.run_all [--duration 30] [--requests 500] [--workers N] [--no-readme]

Gateway overhead (bench.gateway) against the fake upstream and LiteLLM's proxy; routing
decision latency and training throughput come from ``bench/router.py`` when it provides them
(see ``routing_benchmarks``). Numbers are written, never asserted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import gateway, litellm_proxy, report

RESULTS = Path(__file__).resolve().parent / "results.json"

# Names ``bench/router.py`` (the training side's module) may define; each is called with no
# arguments and returns a JSON-serialisable dict.
ROUTER_HOOKS = ("decision_latency", "router_added_latency", "training_throughput")


def routing_benchmarks() -> dict[str, Any] | None:
    """Routing decision latency, ``router/<slug>`` added latency and training throughput.

    TODO: these belong to bench/router.py; until it exposes one of ``ROUTER_HOOKS`` this
    returns None and the results say "not measured" (no made-up numbers).
    """
    try:
        module = importlib.import_module("bench.router")
    except ImportError:
        return None
    found = {
        name: getattr(module, name)
        for name in ROUTER_HOOKS
        if callable(getattr(module, name, None))
    }
    if not found:
        return None
    results: dict[str, Any] = {}
    for name, function in found.items():
        gateway.log(f"routing benchmark: bench.router.{name}()")
        try:
            results[name] = function()
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return results


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
    args = parser.parse_args(argv)
    started = time.monotonic()
    opts = gateway.Options(
        duration=args.duration,
        direct_duration=args.direct_duration or min(10.0, args.duration),
        requests=args.requests,
        stream_requests=args.stream_requests,
        workers=args.workers,
    )
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": report.machine(),
    }
    results["gateway"] = gateway.gateway_benchmarks(opts)
    results["versions"] = report.versions(litellm_proxy.venv_python())
    results["summary"] = report.summarize(results["gateway"])
    results["routing"] = routing_benchmarks()
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    report.write_json(results, args.output)
    print()
    print(report.table(results))
    print(f"\nLiteLLM database mode: {results['gateway']['litellm']['database']} "
          f"({results['gateway']['litellm']['note']})")  # fmt: skip
    if not args.no_readme:
        report.write_readme(results)
    print(f"\nwrote {args.output} in {results['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
