"""Two versions of RouterHub side by side in one run (not part of ``make bench``): c=1 latency
against the 0 ms fake upstream, alternating old and new run by run (A-B-B-A-A-B…), so that
the machine's other work weighs on both alike.

    python -m bench.side_by_side --old main [--rounds 8] [--requests 500]

``--old`` is a commit; its tree is exported (``bench.procs.export_revision``) to a temporary
directory and served from there with the same .venv. Each version is the production server
(gunicorn, 2 uvicorn workers, its own settler) with the same settings and secrets, on a database
and Redis db of its own: ``BENCH_DATABASE`` and ``BENCH_REDIS_URL`` for the new one, the same
with ``_old`` and the next Redis db number for the old one (both dropped/flushed at the start;
``old_and_new`` starts them, ``bench.side_by_side_keys`` too). Prints each run and the pooled
percentiles of all requests of each version, and each server's CPU per request (its whole
process tree: gunicorn, workers and settler; the direct line is the fake upstream's).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import gateway
from bench.loadgen import percentile
from bench.procs import Proc, cpu_seconds, export_revision, free_port, git_commit, wait_http


@dataclass
class Versions:
    """What ``old_and_new`` started: the fake upstream, one environment for both servers (one
    key pepper: a key's digest is the same in both databases), and each server as a target with
    its database."""

    fake: Proc
    upstream: str
    env: dict[str, str]
    targets: list[gateway.Target]
    databases: dict[str, str]  # target name -> its database


@contextlib.contextmanager
def old_and_new(old: str, workers: int, out: Path) -> Iterator[Versions]:
    """The 0 ms fake upstream and two production servers, commit ``old``'s tree (exported to a
    temporary directory) and this one, each on a database and Redis db of its own; at exit every
    process is stopped and the old version's database dropped."""
    procs: list[Proc] = []
    old_database = f"{gateway.RH_DB}_old"
    servers = {
        f"old {git_commit(old, short=10)}": (old_database, _next_db(gateway.REDIS_URL)),
        f"new {git_commit('HEAD', short=10)}": (gateway.RH_DB, gateway.REDIS_URL),
    }
    with tempfile.TemporaryDirectory(prefix="rh-side-by-side-") as tmp:
        try:
            fake, upstream = gateway.start_fake(0, out)
            procs.append(fake)
            trees = [export_revision(old, Path(tmp) / "old"), gateway.REPO]
            versions = Versions(fake, upstream, gateway.routerhub_env(upstream), [], {})
            for tree, (name, (database, redis_url)) in zip(trees, servers.items(), strict=True):
                proc, target = _serve(name, tree, versions.env, database, redis_url, workers, out)
                procs.append(proc)
                versions.targets.append(target)
                versions.databases[name] = database
            yield versions
        finally:
            for proc in reversed(procs):
                proc.stop()
            _drop(old_database)


def _serve(name: str, tree: Path, env: dict[str, str], database: str, redis_url: str,
           workers: int, out: Path) -> tuple[Proc, gateway.Target]:  # fmt: skip
    from routerhub.redis_clients import redis_client

    env = env | {
        "DATABASE_URL": f"postgres://{gateway.PG['user']}@{gateway.PG['host']}:"
        f"{gateway.PG['port']}/{database}",
        "REDIS_URL": redis_url,
    }
    gateway.recreate_database(database)
    redis_client(redis_url).flushdb()
    py = str(gateway.PY)
    subprocess.run([py, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=tree,
                   check=True, capture_output=True)  # fmt: skip
    seeded = subprocess.run([py, "-m", "bench.seed", "--seed"], env=env, cwd=tree, check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    key = json.loads(seeded.splitlines()[-1])["key"]
    port = free_port()
    argv = [str(gateway.GUNICORN), "routerhub.asgi:application", "-c", "deploy/gunicorn.conf.py",
            "--workers", str(workers), "--bind", f"127.0.0.1:{port}"]  # fmt: skip
    proc = Proc(f"routerhub-{name}", argv, env=env, cwd=tree, log_dir=out)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", timeout=90, proc=proc)
    target = gateway.Target(name, f"{url}/v1/chat/completions", key, {0: "demo/small"}, proc.pid)
    gateway.chat_probe(target.url, key, "demo/small", proc)
    return proc, target


def _next_db(redis_url: str) -> str:
    base, _, number = redis_url.rpartition("/")
    return f"{base}/{int(number or 0) + 1}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", required=True, help="the commit to compare with (e.g. main)")
    parser.add_argument("--rounds", type=int, default=8, help="runs of each version")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--workers", type=int, default=gateway.Options.workers)
    args = parser.parse_args()
    out = gateway.REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    with old_and_new(args.old, args.workers, out) as versions:
        direct = gateway.Target("direct", f"{versions.upstream}/v1/chat/completions", "",
                                {0: "demo/small"}, versions.fake.pid)  # fmt: skip
        _alternate(direct, versions.targets, args)


def _alternate(direct: gateway.Target, targets: list[gateway.Target], args: Any) -> None:
    samples: dict[str, list[float]] = {t.name: [] for t in (direct, *targets)}
    cpu: dict[str, float] = dict.fromkeys(samples, 0.0)  # the server's process tree, settler in
    for round_ in range(args.rounds):
        for target in [direct, *(targets if round_ % 2 == 0 else targets[::-1])]:
            cpu0 = cpu_seconds(target.cpu_root)
            res, took = gateway.latency_run(target, 0, "--requests", str(args.requests),
                                            "--warmup", "50", "--max-seconds", "120")  # fmt: skip
            samples[target.name] += took
            lat = res["latency_ms"]
            time.sleep(1.0)  # the last batch settles before the other version runs
            spent = cpu_seconds(target.cpu_root) - cpu0  # with the warm-up's 50 and the settling
            cpu[target.name] += spent
            print(f"round {round_ + 1} {target.name:<16} p50 {lat['p50']:.3f} p90 {lat['p90']:.3f} "
                  f"p99 {lat['p99']:.3f} ms  errors {res['errors']}  "
                  f"CPU {spent * 1000 / (args.requests + 50):.2f} ms/request  "
                  f"[other load {res['foreign_cores']:.2f} cores]", flush=True)  # fmt: skip
    print(f"\npooled over {args.rounds} runs of {args.requests} each:")
    for name, values in samples.items():
        print(f"  {name:<16} p50 {percentile(values, 50):.3f}  p90 {percentile(values, 90):.3f}  "
              f"p99 {percentile(values, 99):.3f}  p99.9 {percentile(values, 99.9):.3f} ms  "
              f"(n={len(values)}; server CPU "
              f"{cpu[name] * 1000 / (args.rounds * (args.requests + 50)):.2f} ms/request)")  # fmt: skip


def _drop(database: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **gateway.PG) as conn:  # type: ignore[arg-type]
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
