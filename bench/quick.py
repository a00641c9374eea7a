"""Quick gateway check while developing (not part of ``make bench``): RouterHub alone, production
server, c=1 latency and throughput at c=16 and c=64 against the 0 ms fake upstream.

    python -m bench.quick [--workers 2] [--seconds 10]
    python -m bench.quick --pipeline [--requests 300]   # only pipeline/<one step> vs its model

``--pipeline`` runs the A-B-B-A comparison ``make bench`` reports (``gateway.measure_pipeline``)
without LiteLLM or the throughput runs.
"""

from __future__ import annotations

import argparse
import json

from bench import gateway
from bench.procs import Proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=gateway.Options.workers)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pipeline", action="store_true", help="only the one-step pipeline")
    parser.add_argument("--requests", type=int, default=300, help="c=1 requests per --pipeline run")
    parser.add_argument("--requests-c1", type=int, default=2000, help="c=1 requests per run")
    args = parser.parse_args()
    out = gateway.REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    try:
        target, direct = gateway.routerhub_alone(args.workers, out, procs)
        if args.pipeline:
            opts = gateway.Options(requests=args.requests, warmup=30)
            added = gateway.measure_pipeline(target, opts, lambda latency: None)
            print(json.dumps({k: v for k, v in added.items() if k != "runs"}))
            return
        opts = gateway.Options(requests=args.requests_c1)
        upstream = direct.url.removesuffix("/v1/chat/completions")
        gateway.measure_c1([direct, target], 0, opts, upstream)
        added, lat = target.results["0ms"]["latency"]["added_ms"], target.results["0ms"]["latency"]
        print(f"c=1 added p50 {added['p50']:.2f} ms, p99 {added['p99']:.2f} ms "
              f"(RouterHub's p99 {lat['latency_ms']['p99']:.2f} ms; the direct upstream's, median "
              f"of {gateway.DIRECT_RUNS} runs, {direct.results['0ms']['latency']['latency_ms']['p99']:.2f})")  # fmt: skip
        for concurrency in (16, 64):
            res = gateway.loadgen("throughput", target, 0, "--concurrency", str(concurrency),
                                  "--duration", str(args.seconds), "--warmup-seconds", "1")  # fmt: skip
            print(f"c={concurrency}: {res['rps']:.0f} req/s, errors {res['errors']}, "
                  f"other load {res['foreign_cores']} cores")  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
