"""What one settlement batch costs, per draft: the settler's CPU and its PostgreSQL backend's.

    python -m bench.settle_cost [--baseline main] [--rounds 4] [--batches 30] [--batch 70]

Each round, each tree (this one, and with ``--baseline`` a commit's, exported with ``git
archive``) runs in a child process of its own, alternating (new, old, old, new, …), against one
real PostgreSQL database (``BENCH_DATABASE``, dropped and migrated from this tree at the start;
set it to a database of your own). A child holds credit for ``--batch`` requests the way the
gateway does (``RESERVE_SQL``), builds their usage drafts as the gateway does (a chat completion
of demo/small, 527 B of JSON), and then, timed, does what the settler does with a batch it read
from the stream: decode the drafts, ``usage_settle_batch(…, wait_durable=False)``, read the WAL
position. Per batch it measures the settler's CPU (``time.process_time``), its backend's CPU
(``/proc/<pg_backend_pid()>/schedstat``: the database runs on this machine), the wall time, and
the statements and round trips (Django's ``execute_wrapper``; a pipelined ``executemany`` is one
round trip of many statements, a ``COPY`` one of one). Prints medians over all batches of a
tree, per draft and per batch, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PY = REPO / ".venv" / "bin" / "python"
DATABASE = os.environ.get("BENCH_DATABASE", "routerhub_bench")
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


# --- the child: one tree's batches ----------------------------------------------------------------


class _Counter:
    """Django's ``execute_wrapper``: round trips and statements (a COPY counts as one of each)."""

    def __init__(self) -> None:
        self.trips = self.statements = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.trips += 1
        self.statements += len(params) if many else 1
        return execute(sql, params, many, context)


def _count_copies(counter: _Counter) -> None:
    """COPY does not pass Django's wrappers: count psycopg's ``Cursor.copy`` calls."""
    import psycopg

    copy = psycopg.Cursor.copy

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        counter.trips += 1
        counter.statements += 1
        return copy(self, *args, **kwargs)

    psycopg.Cursor.copy = counted  # type: ignore[method-assign]


def _backend_cpu_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def _fixture(tag: str) -> tuple[Any, Any]:
    from decimal import Decimal

    from accounts.models import User
    from accounts.services import api_key_create, organization_create
    from billing.services import ledger_post

    user = User.objects.create_user(f"settle-{tag}@routerhub.invalid", None)
    organization = organization_create(name=f"Settle {tag}", owner=user)
    ledger_post(organization=organization, kind="promotion", amount=Decimal("1000000"),
                idempotency_key=f"settle-grant-{tag}")  # fmt: skip
    key = api_key_create(organization=organization, name="bench", created_by=user).key
    return organization, key


def _payloads(organization: Any, key: Any, count: int, tag: str) -> list[bytes]:
    """Hold credit for ``count`` requests (as the gateway does) and return their drafts' bytes."""
    from decimal import Decimal

    from billing.drafts import UsageDraft, draft_encode
    from billing.services import ReservationRequest, credits_reserve

    payloads = []
    for i in range(count):
        generation_id = f"gen-{tag}-{i:05d}-{os.urandom(6).hex()}"
        credits_reserve(ReservationRequest(organization_id=organization.pk,
                                           generation_id=generation_id,
                                           amount=Decimal("0.000512"), key_id=key.pk))  # fmt: skip
        draft = UsageDraft(generation_id=generation_id, organization_id=organization.pk,
                           key_id=key.pk, status="succeeded", cost=Decimal("0.00001425"),
                           model="demo/small", requested_model="demo/small", provider="demo",
                           prompt_tokens=17, completion_tokens=9, latency_ms=1, ttft_ms=1)  # fmt: skip
        payloads.append(draft_encode(draft))
    return payloads


def _child(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
    import django

    django.setup()
    from django.db import connection

    from billing.drafts import draft_decode
    from billing.settlement import usage_settle_batch
    from billing.wal import wal_position

    tag = f"{args.child_tag}-{os.getpid()}"
    counter = _Counter()
    _count_copies(counter)
    organization, key = _fixture(tag)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    samples: list[dict[str, float]] = []
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU, not the waits for the database
    for b in range(args.batches + 1):  # the first batch warms caches up and is not counted
        payloads = _payloads(organization, key, args.batch, f"{tag}-{b}")
        counter.trips = counter.statements = 0
        with connection.execute_wrapper(counter):
            pg0, cpu0, wall0 = _backend_cpu_ns(backend), time.process_time(), time.perf_counter()
            if profiler is not None and b:
                profiler.enable()
            settled = usage_settle_batch([draft_decode(p) for p in payloads], wait_durable=False)
            wal_position()
            if profiler is not None:
                profiler.disable()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            pg = (_backend_cpu_ns(backend) - pg0) / 1e9
        assert len(settled) == args.batch, f"settled {len(settled)} of {args.batch}"
        if b:
            samples.append({"settler_cpu": cpu, "pg_cpu": pg, "wall": wall,
                            "trips": counter.trips, "statements": counter.statements})  # fmt: skip
    if profiler is not None:
        import pstats

        stats = pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime")
        stats.print_stats(25)
        stats.print_callers("search|money|isinstance")
    return {"samples": samples}


# --- the parent: trees in alternation --------------------------------------------------------------


def _env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(PYTHONPATH=str(tree), DJANGO_SETTINGS_MODULE="routerhub.settings",
               ROUTERHUB_ENV="test", REQUIRE_SERVICES="1", REDIS_URL="", CELERY_BROKER_URL="",
               DATABASE_URL=f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{DATABASE}")  # fmt: skip
    return env


def _database_fresh() -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:  # type: ignore[arg-type]
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    subprocess.run([str(PY), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO,
                   env=_env(REPO), check=True, capture_output=True)  # fmt: skip


def _run_child(tree: Path, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    argv = [str(PY), str(Path(__file__)), "--child-tag", tag, "--batches", str(args.batches),
            "--batch", str(args.batch)] + (["--profile"] if args.profile else [])  # fmt: skip
    result = subprocess.run(argv, cwd=tree, env=_env(tree), capture_output=True, text=True,
                            check=False)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"child in {tree} failed:\n{result.stderr[-3000:]}")
    if args.profile:
        print(f"--- profile, {tag} ---\n{result.stderr[-20000:]}", file=sys.stderr)
    return dict(json.loads(result.stdout.splitlines()[-1]))


def _summary(samples: list[dict[str, float]], batch: int) -> dict[str, float]:
    def med(name: str) -> float:
        return statistics.median(s[name] for s in samples)

    return {
        "batches": len(samples),
        "settler_cpu_us_per_draft": round(med("settler_cpu") / batch * 1e6, 1),
        "pg_cpu_us_per_draft": round(med("pg_cpu") / batch * 1e6, 1),
        "both_us_per_draft": round(
            statistics.median(s["settler_cpu"] + s["pg_cpu"] for s in samples) / batch * 1e6, 1
        ),
        "wall_ms_per_batch": round(med("wall") * 1e3, 2),
        "wall_ms_p90_per_batch": round(
            sorted(s["wall"] for s in samples)[int(0.9 * len(samples))] * 1e3, 2
        ),
        "round_trips_per_batch": med("trips"),
        "statements_per_batch": med("statements"),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: this file also runs as a child in an older tree, whose bench.procs may
    # predate the helper.
    from bench.procs import export_revision

    _database_fresh()
    load = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="settle-baseline-") as tmp:
        trees = {"this tree": REPO}
        if args.baseline:
            trees[f"baseline {args.baseline}"] = export_revision(args.baseline, Path(tmp))
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        order = list(trees)
        for r in range(args.rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                samples[name] += _run_child(trees[name], args, f"r{r}-{name.split()[0]}")["samples"]
    return {
        "batch": args.batch,
        "loadavg_start": load,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "trees": {name: _summary(s, args.batch) for name, s in samples.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Settlement's cost per draft, old vs new.")
    parser.add_argument("--baseline", default=None, help="a commit to compare with (e.g. main)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batches", type=int, default=30, help="timed batches per child")
    parser.add_argument("--batch", type=int, default=70, help="drafts per batch")
    parser.add_argument("--profile", action="store_true", help="cProfile the settle (stderr)")
    parser.add_argument("--child-tag", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_tag is not None:
        # Run as a script, the first import path is bench/; a child imports the tree under test.
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
        print(json.dumps(_child(args)))
        return 0
    print(json.dumps(run(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
