"""Soak: steady load against the production server for a long time; report memory growth of the
gateway workers, the error rate and whether settlement kept up.

    python -m bench.soak [--duration 600] [--concurrency 8] [--workers N] [--warmup 30]
                         [--database-url postgres://…/routerhub_soak] [--redis-url redis://…/12]

``make soak`` runs it for 10 minutes (not part of ``make test``; ``tests/reliability/test_soak.py``
runs a 60-second version with assertions). The server is what ``make serve`` runs: gunicorn with
uvicorn workers (``deploy/gunicorn.conf.py``), production settings, Postgres and Redis, a key with
rpm/tpm limits, reservations and settlement through the Redis stream, against the fake upstream.
The load is ``bench.loadgen throughput`` (closed loops over keep-alive connections).

Memory: each worker's RSS is sampled every few seconds; growth is the last sample over the one
taken after the warm-up (the first requests fill caches, pools and lazily imported modules).
A worker replaced during the run would hide a leak (and lose its in-flight requests), so the
worker pids must not change. The database is dropped and created again: point ``--database-url``
only at a database that may be wiped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.gateway import PY, REPO, log, routerhub_env, run_py, start_fake, start_routerhub
from bench.procs import Proc, rss_bytes, tree

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/routerhub_soak"
REDIS_URL = "redis://127.0.0.1:6379/12"
USAGE_STREAM = "rh:usage-stream"  # billing.outbox.STREAM


@dataclass
class Options:
    duration: float = 600.0
    warmup: float = 30.0
    concurrency: int = 8
    workers: int = 2
    sample_every: float = 5.0
    database_url: str = DATABASE_URL
    redis_url: str = REDIS_URL
    out: Path = REPO / "bench" / "out" / "soak"


@dataclass
class MemorySeries:
    """RSS of each gateway worker (the master's children) over time, sampled in a thread."""

    master: int
    every: float
    samples: list[tuple[float, dict[int, int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def workers(self) -> dict[int, int]:
        return {pid: rss_bytes(pid) for pid in tree(self.master) if pid != self.master}

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.every):
            self.samples.append((time.monotonic() - started, self.workers()))

    def start(self) -> MemorySeries:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.every + 5)
        self.samples.append((self.samples[-1][0] + self.every if self.samples else 0.0,
                             self.workers()))  # fmt: skip


def recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def wait_settled(redis_url: str, timeout: float = 120.0) -> float:
    """Seconds until the usage stream is empty (every draft settled and deleted), bounded."""
    from routerhub.redis_clients import redis_client

    client = redis_client(redis_url)
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            if client.xlen(USAGE_STREAM) == 0:
                return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"usage stream still has {client.xlen(USAGE_STREAM)} drafts")
    finally:
        client.close()


def _loadgen(url: str, key: str, concurrency: int, duration: float) -> dict[str, Any]:
    argv = [str(PY), "-m", "bench.loadgen", "throughput", "--url", url, "--key", key,
            "--model", "demo/small", "--concurrency", str(concurrency), "--duration",
            str(duration), "--warmup-seconds", "0", "--timeout", "30"]  # fmt: skip
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False,
                            timeout=duration + 120)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"load generator failed: {result.stderr[-2000:]}")
    return dict(json.loads(result.stdout.splitlines()[-1]))


def _growth(baseline: dict[int, int], final: dict[int, int]) -> dict[str, Any]:
    per_worker = {
        str(pid): {
            "baseline_mb": round(baseline[pid] / 2**20, 1),
            "final_mb": round(final.get(pid, 0) / 2**20, 1),
            "growth": (final.get(pid, 0) - baseline[pid]) / baseline[pid]
            if baseline[pid]
            else None,
        }
        for pid in baseline
    }
    growths = [w["growth"] for w in per_worker.values() if w["growth"] is not None]
    return {"workers": per_worker, "max_growth": max(growths) if growths else None}


def soak(opts: Options) -> dict[str, Any]:
    """Set up, warm up, load for ``duration`` s while sampling memory, drain, verify."""
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    try:
        fake, upstream = start_fake(0, out)
        procs.append(fake)
        env = routerhub_env(upstream) | {
            "DATABASE_URL": opts.database_url,
            "REDIS_URL": opts.redis_url,
            "ROUTERHUB_VAR_DIR": str(out / "var"),
        }
        log(f"database {opts.database_url}: drop, create, migrate, seed")
        recreate_database(opts.database_url)
        from routerhub.redis_clients import redis_client

        redis_client(opts.redis_url).flushdb()
        run_py(["manage.py", "migrate", "--noinput", "-v", "0"], env, out / "setup.log")
        seeded = run_py(["-m", "bench.seed", "--seed"], env, out / "setup.log")
        key = str(json.loads(seeded.splitlines()[-1])["key"])
        server, url = start_routerhub(env, opts.workers, out)
        procs.append(server)
        chat = f"{url}/v1/chat/completions"
        log(f"RouterHub ({opts.workers} workers) on {url}; warm-up {opts.warmup:.0f} s")

        warm = _loadgen(chat, key, opts.concurrency, opts.warmup)
        memory = MemorySeries(server.pid, opts.sample_every)
        baseline = memory.workers()
        log(f"warm-up: {warm['rps']:.0f} req/s; worker RSS "
            f"{[round(b / 2**20) for b in baseline.values()]} MB; load {opts.duration:.0f} s")  # fmt: skip
        memory.start()
        run = _loadgen(chat, key, opts.concurrency, opts.duration)
        memory.stop()
        final = memory.samples[-1][1]
        settle_s = wait_settled(opts.redis_url)
        books = json.loads(
            run_py(["-m", "bench.seed", "--verify"], env, out / "setup.log").splitlines()[-1]
        )
        served_ok = int(warm["total_ok_including_warmup"]) + int(run["total_ok_including_warmup"])
        succeeded = int(books["usage_records"].get("succeeded", 0))
        result = {
            "duration_s": opts.duration,
            "concurrency": opts.concurrency,
            "workers": opts.workers,
            "requests": run["requests"],
            "rps": run["rps"],
            "errors": run["errors"],
            "error_rate": run["error_rate"],
            "statuses": run["statuses"],
            "latency_ms": run["latency_ms"],
            "memory": _growth(baseline, final),
            "workers_replaced": sorted(set(baseline) ^ set(final)),
            "rss_series_mb": [
                {"t": round(t, 1), **{str(p): round(b / 2**20, 1) for p, b in s.items()}}
                for t, s in memory.samples
            ],
            "settlement": {
                "ok_responses": served_ok,
                "succeeded_records": succeeded,
                "records_match_ok_responses": succeeded == served_ok,
                "ledger_matches_balance": books["ledger_matches_balance"],
                "reservations": books["reservations"],
                "drained_after_s": round(settle_s, 2),
            },
        }
        return result
    finally:
        for proc in reversed(procs):
            proc.stop()


def report(result: dict[str, Any]) -> str:
    mem = result["memory"]
    growth = mem["max_growth"]
    settlement = result["settlement"]
    lines = [
        f"soak: {result['duration_s']:.0f} s at c={result['concurrency']}, "
        f"{result['workers']} workers: {result['requests']} requests, {result['rps']:.0f} req/s, "
        f"errors {result['errors']} ({(result['error_rate'] or 0) * 100:.3f}%), "
        f"statuses {result['statuses']}",
        "worker RSS after warm-up -> end: "
        + ", ".join(f"{w['baseline_mb']} -> {w['final_mb']} MB" for w in mem["workers"].values())
        + (f" (max growth {growth * 100:+.1f}%)" if growth is not None else ""),
        f"workers replaced during the run: {result['workers_replaced'] or 'none'}",
        f"settlement: {settlement['succeeded_records']} succeeded usage records for "
        f"{settlement['ok_responses']} 200 responses; ledger == balance: "
        f"{settlement['ledger_matches_balance']}; reservations {settlement['reservations']}; "
        f"stream drained {settlement['drained_after_s']} s after the load",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=Options.duration)
    parser.add_argument("--warmup", type=float, default=Options.warmup)
    parser.add_argument("--concurrency", type=int, default=Options.concurrency)
    parser.add_argument("--workers", type=int, default=Options.workers)
    parser.add_argument("--database-url", default=DATABASE_URL,
                        help="a database that may be dropped and recreated")  # fmt: skip
    parser.add_argument(
        "--redis-url", default=REDIS_URL, help="a Redis database that may be flushed"
    )
    parser.add_argument("--output", type=Path, default=Options.out / "soak.json")
    args = parser.parse_args(argv)
    opts = Options(duration=args.duration, warmup=args.warmup, concurrency=args.concurrency,
                   workers=args.workers, database_url=args.database_url,
                   redis_url=args.redis_url)  # fmt: skip
    result = soak(opts)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(report(result), flush=True)
    print(f"written to {args.output}", flush=True)
    ok = (result["errors"] == 0 and not result["workers_replaced"]
          and result["settlement"]["records_match_ok_responses"]
          and result["settlement"]["ledger_matches_balance"])  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
