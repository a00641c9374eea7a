"""Two versions of RouterHub side by side (not part of ``make bench``): throughput and CPU per
request at several concurrencies, and c=1 latency, in alternating rounds A-B-A-B in one run.

    python -m bench.concurrency_ab [--a main] [--b .] [--rounds 2] [--seconds 15]
        [--concurrency 16,64,256] [--a-env K=V ...] [--b-env K=V ...]

``--a``/``--b`` name a source tree: a directory, or a git revision exported (``git archive``)
into bench/out/ab-<sha>/. Both serve the same database (migrated once by this checkout's code),
the same 0 ms fake upstream and the same Redis; each server is started for its turn and stopped
after it, so its settler settles only its own drafts. CPU per 1,000 requests is counted for the
server's process tree (workers + settler), for the PostgreSQL backends of the bench database,
for the fake upstream and for the load generator, so a change that moves work between them
shows. On a shared machine, compare the columns of one run, never numbers of different runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import gateway
from bench.procs import (
    ForeignLoad,
    Proc,
    Sampler,
    _stat,
    cpu_seconds,
    export_revision,
    free_port,
    git_commit,
    tree,
    wait_http,
)

_TICK = os.sysconf("SC_CLK_TCK")


def source_tree(spec: str, out: Path) -> Path:
    """A copy of a directory's code (so editing it during the run changes nothing), or a git
    revision exported once, under ``out``."""
    path = Path(spec)
    if path.is_dir():
        copy = out / f"ab-copy-{path.resolve().name}-{time.strftime('%H%M%S')}"
        ignore = shutil.ignore_patterns(".git", ".venv", "out", "__pycache__", "node_modules")
        shutil.copytree(path, copy, ignore=ignore, symlinks=True)
        return copy
    tree = out / f"ab-{git_commit(spec, short=10)}"
    if not (tree / "manage.py").exists():
        export_revision(spec, tree)
    return tree


def _pg_backends() -> list[int]:
    """PIDs of the PostgreSQL backends connected to the bench database."""
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **gateway.PG) as conn:  # type: ignore[arg-type]
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [gateway.RH_DB],
        ).fetchall()
    return [int(row[0]) for row in rows]


def _account_updates() -> int:
    """Row updates of credit accounts and hold rows so far (holds and settlement; the statistics
    lag up to a second, the same at both ends of a run)."""
    import psycopg

    with psycopg.connect(dbname=gateway.RH_DB, autocommit=True, **gateway.PG) as conn:  # type: ignore[arg-type]
        row = conn.execute(
            "SELECT coalesce(sum(n_tup_upd), 0) FROM pg_stat_user_tables"
            " WHERE relname IN ('billing_creditaccount', 'billing_credithold')"
        ).fetchone()
    return int(row[0]) if row else 0


def _cpu_of(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            out[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    return out


def _settlers(root: int) -> list[int]:
    """The usage settler under the server's master (its share of the server's CPU)."""
    found = []
    for pid in tree(root):
        try:
            if b"usage_settler" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


class WaitSampler(Sampler):
    """Samples what the gateway's and the settler's PostgreSQL sessions are doing, every 20 ms
    (active, waiting on a lock, idle), to see queueing on a hot row; ``results()`` counts each."""

    def __init__(self) -> None:
        super().__init__(0.02)
        self.counts: Counter[str] = Counter()
        self._conn: Any = None

    @contextlib.contextmanager
    def _thread_state(self) -> Iterator[None]:
        import psycopg

        with psycopg.connect(dbname="postgres", autocommit=True, **gateway.PG) as self._conn:  # type: ignore[arg-type]
            yield

    def sample(self) -> None:
        rows = self._conn.execute(
            "SELECT application_name, state, wait_event_type, wait_event "
            "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [gateway.RH_DB],
        ).fetchall()
        for app, state, wait_type, wait in rows:
            who = "gateway" if app == "routerhub-gateway" else "other"
            what = f"{wait_type}:{wait}" if wait_type and state == "active" else state
            self.counts[f"{who} {what}"] += 1

    def results(self) -> dict[str, Any]:
        return dict(self.counts)


def start_server(tree: Path, env: dict[str, str], workers: int, out: Path, name: str) -> Proc:
    port = free_port()
    argv = [str(gateway.GUNICORN), "routerhub.asgi:application", "-c",
            str(tree / "deploy" / "gunicorn.conf.py"), "--workers", str(workers),
            "--bind", f"127.0.0.1:{port}"]  # fmt: skip
    proc = Proc(name, argv, env=env, cwd=tree, log_dir=out)
    proc.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    wait_http(f"{proc.url}/healthz", timeout=90, proc=proc)  # type: ignore[attr-defined]
    return proc


def measure_one(target: gateway.Target, fake_pid: int, concurrency: int,
                seconds: float) -> dict[str, Any]:  # fmt: skip
    """One throughput run; CPU of each party per 1,000 answered requests."""
    backends = _pg_backends()
    settler = _settlers(target.cpu_root)
    before = {
        "routerhub": cpu_seconds(target.cpu_root),
        "settler": sum(_cpu_of(settler).values()),
        "upstream": cpu_seconds(fake_pid),
        "loadgen": sum(os.times()[2:4]),
    }
    pg_before = _cpu_of(backends)
    updates = _account_updates()
    with WaitSampler() as waits:
        res = gateway.loadgen("throughput", target, 0, "--concurrency", str(concurrency),
                              "--duration", str(seconds), "--timeout", "30",
                              "--warmup-seconds", str(max(2.0, concurrency / 64)))  # fmt: skip
    after = {
        "routerhub": cpu_seconds(target.cpu_root),
        "settler": sum(_cpu_of(settler).values()),
        "upstream": cpu_seconds(fake_pid),
        "loadgen": sum(os.times()[2:4]),
    }
    pg_after = _cpu_of(list(set(backends) | set(_pg_backends())))
    updates = _account_updates() - updates
    served = res["total_ok_including_warmup"] + res["errors"]
    per_1k = {name: (after[name] - before[name]) / served * 1000 for name in before}
    pg = sum(cpu - pg_before.get(pid, 0.0) for pid, cpu in pg_after.items())
    per_1k["postgres"] = pg / served * 1000
    counts = Counter(waits.results())
    total = sum(counts.values()) or 1
    return {
        "rps": res["rps"],
        "errors": res["errors"],
        "p50_ms": res["latency_ms"]["p50"],
        "p99_ms": res["latency_ms"]["p99"],
        "cpu_ms_per_request": {k: round(v, 4) for k, v in per_1k.items()},
        "foreign_cores": res["foreign_cores"],
        "account_updates_per_request": round(updates / served, 3),
        "pg_sessions": {k: round(v / total, 4) for k, v in counts.most_common(8)},
    }


def run_variant(name: str, tree: Path, env: dict[str, str], args: argparse.Namespace,
                key: str, fake: tuple[int, str]) -> dict[str, Any]:  # fmt: skip
    out = gateway.REPO / "bench" / "out"
    proc = start_server(tree, env, args.workers, out, f"ab-{name}")
    try:
        url = f"{proc.url}/v1/chat/completions"  # type: ignore[attr-defined]
        gateway.chat_probe(url, key, "demo/small", proc)
        target = gateway.Target(name, url, key, {0: "demo/small"}, proc.pid)
        result: dict[str, Any] = {}
        lat = gateway.loadgen("latency", target, 0, "--requests", str(args.latency_requests),
                              "--warmup", "100")["latency_ms"]  # fmt: skip
        result["c1"] = {"p50_ms": lat["p50"], "p99_ms": lat["p99"]}
        gateway.log(f"{name}: c=1 p50 {lat['p50']:.2f} ms p99 {lat['p99']:.2f} ms")
        for concurrency in args.concurrency:
            res = measure_one(target, fake[0], concurrency, args.seconds)
            result[f"c{concurrency}"] = res
            gateway.clear_upstream(fake[1])
            cpu = res["cpu_ms_per_request"]
            gateway.log(f"{name}: c={concurrency:<3} {res['rps']:>6.0f} req/s  errors {res['errors']}  "
                        f"CPU ms/req routerhub {cpu['routerhub']:.3f} (settler {cpu['settler']:.3f}) postgres {cpu['postgres']:.3f} "
                        f"upstream {cpu['upstream']:.3f} loadgen {cpu['loadgen']:.3f}  account updates/req "
                        f"{res['account_updates_per_request']:.2f}  "
                        f"[other load {res['foreign_cores']:.2f} cores]")  # fmt: skip
        gateway.wait_settled()
        return result
    finally:
        proc.stop()


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", default="main", help="directory or git revision (default main)")
    parser.add_argument("--b", default=str(gateway.REPO), help="directory or git revision")
    parser.add_argument("--a-env", action="append", default=[], metavar="K=V")
    parser.add_argument("--b-env", action="append", default=[], metavar="K=V")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")],
                        default=[16, 64, 256])  # fmt: skip
    parser.add_argument("--workers", type=int, default=gateway.Options.workers)
    parser.add_argument("--latency-requests", type=int, default=1000)
    args = parser.parse_args()
    out = gateway.REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    trees = {"A": source_tree(args.a, out), "B": source_tree(args.b, out)}
    extra = {"A": _env_pairs(args.a_env), "B": _env_pairs(args.b_env)}
    fake_proc, upstream = gateway.start_fake(0, out)
    runs: list[dict[str, Any]] = []
    try:
        env = gateway.routerhub_env(upstream)
        key, _ = gateway.setup_routerhub_db(env, out)
        foreign = ForeignLoad()
        for round_ in range(args.rounds):
            for name in ("A", "B"):
                result = run_variant(name, trees[name], env | extra[name], args, key,
                                     (fake_proc.pid, upstream))  # fmt: skip
                runs.append({"variant": name, "round": round_} | result)
        report = {"a": args.a, "b": args.b, "a_env": extra["A"], "b_env": extra["B"],
                  "foreign_cores_mean": round(foreign.cores(), 2), "runs": runs}  # fmt: skip
        (out / "concurrency_ab.json").write_text(json.dumps(report, indent=1))
        print(json.dumps(report, indent=1))
    finally:
        fake_proc.stop()


if __name__ == "__main__":
    main()
