"""Usage and ledger at scale (`make bench-scale`; not a test): load N usage records and ledger
entries for 1,000 organizations and 100,000 keys with COPY (``bench.scale_data``), then time what
reads or writes them, for the largest organization.

    python -m bench.scale [--rows 10000000] [--database rh_scale] [--skip-load] [--keep]

Timed in-process through Django's test client (the full view, serializer and SQL; no HTTP):
``/api/v1/usage`` per ``group_by`` over 1, 30 and 90 days, the dashboard usage page, the ledger's
first page and a page one million rows deep, ``GET /api/v1/key`` (the key's spend per window) for
the busiest key, and settlement of 100-request batches. Each is called once ("first": a fresh
connection, nothing cached by Django; PostgreSQL's and the OS's caches cannot be emptied on a
shared machine) and then ``--repeat`` times (p50/p95). The CSV export of the last 30 days runs
against a real server (gunicorn, one ASGI worker) whose RSS is sampled while it streams.
Writes ``bench/scale_results.json`` (under ``--label``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from bench.scale_data import Shape, generate

ROOT = Path(__file__).resolve().parent.parent
PSQL_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"


def _environment(database: str) -> dict[str, str]:
    return os.environ | {"ROUTERHUB_ENV": "test", "DEBUG": "0", "DJANGO_SETTINGS_MODULE": "routerhub.settings",
                         "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}"}  # fmt: skip


def _recreate(database: str) -> None:
    import psycopg

    with psycopg.connect(PSQL_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        conn.execute(f'CREATE DATABASE "{database}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                   cwd=ROOT, env=_environment(database), check=True)  # fmt: skip


def _timed(call: Callable[[], Any], repeat: int) -> dict[str, float]:
    began = time.perf_counter()
    call()
    first = time.perf_counter() - began
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return {"first_ms": round(first * 1000, 1), "p50_ms": round(statistics.median(samples) * 1000, 1),
            "p95_ms": round(p95 * 1000, 1), "n": repeat}  # fmt: skip


class Actors:
    """The largest organization, an owner with a management key, and its busiest inference key
    (given a known plaintext by copying a freshly minted key's digest onto it)."""

    def __init__(self) -> None:
        from accounts.models import ApiKey, Membership, Organization, User
        from accounts.services import api_key_create
        from billing.models import UsageRecord

        self.organization = Organization.objects.get(slug="scale-0000")
        self.owner = User.objects.create_user(email=f"owner-{time.time_ns()}@scale.test",
                                              password="scale-bench-password")  # fmt: skip
        Membership.objects.create(user=self.owner, organization=self.organization, role="owner")
        self.manage = api_key_create(organization=self.organization, name="bench manage",
                                     created_by=self.owner, scope="manage").plaintext  # fmt: skip
        busiest = (UsageRecord.objects.filter(organization=self.organization, key__name="key-000")
                   .values_list("key_id", flat=True).first())  # fmt: skip
        assert busiest is not None, "the organization has no usage: load the data first"
        minted = api_key_create(organization=self.organization, name="bench inference",
                                created_by=self.owner)  # fmt: skip
        digest = minted.key.digest
        minted.key.delete()
        ApiKey.objects.filter(pk=busiest).update(digest=digest)
        self.inference = minted.plaintext
        self.busiest_key = busiest


def _client(token: str) -> Any:
    from django.test import Client

    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def _get(client: Any, path: str, **params: Any) -> Any:
    response = client.get(path, params)
    if response.status_code != 200:
        raise RuntimeError(f"{path} {params}: {response.status_code} {response.content[:300]!r}")
    return response


def _usage_timings(actors: Actors, repeat: int) -> dict[str, Any]:
    from django.db import connection
    from django.utils import timezone

    client = _client(actors.manage)
    _get(client, "/api/v1/credits")  # imports and URL resolution are not what is measured
    out: dict[str, Any] = {}
    for days in (1, 30, 90):
        start = (timezone.now() - timedelta(days=days)).isoformat()
        for group_by in ("day", "model", "key", "router", "provider"):
            connection.close()  # "first": a fresh connection
            call = partial(_get, client, "/api/v1/usage", start=start, group_by=group_by)
            out[f"usage {group_by} {days}d"] = _timed(call, repeat)
    return out


def _ledger_deep_params(actors: Actors, client: Any, depth: int) -> dict[str, str]:
    """How to ask for the page ``depth`` rows deep: ``page`` (offset pagination, which answers
    with a ``count``) or a ``cursor`` at the row just above that depth."""
    first = _get(client, "/api/v1/ledger", limit=50).json()
    if "count" in first:
        return {"limit": "50", "page": str(depth // 50 + 1)}
    from billing.models import LedgerEntry
    from routerhub.keyset import Position

    row = (LedgerEntry.objects.filter(organization=actors.organization)
           .order_by("-created_at", "-id").values_list("created_at", "id")[depth - 1])  # fmt: skip
    return {"limit": "50", "cursor": Position(row[0], row[1]).encode()}


def _page_timings(actors: Actors, repeat: int) -> dict[str, Any]:
    from django.db import connection
    from django.test import Client

    manage = _client(actors.manage)
    out: dict[str, Any] = {}
    connection.close()
    out["ledger first page"] = _timed(lambda: _get(manage, "/api/v1/ledger", limit=50), repeat)
    from billing.models import LedgerEntry

    depth = min(
        1_000_000, LedgerEntry.objects.filter(organization=actors.organization).count() - 100
    )
    deep = _ledger_deep_params(actors, manage, depth)
    connection.close()
    out[f"ledger page {depth:,} rows deep"] = _timed(
        lambda: _get(manage, "/api/v1/ledger", **deep), repeat
    )
    browser = Client()
    browser.force_login(actors.owner)
    connection.close()
    out["dashboard usage page"] = _timed(lambda: _get(browser, "/dashboard/usage/"), repeat)
    connection.close()
    out["dashboard overview"] = _timed(lambda: _get(browser, "/dashboard/"), repeat)
    connection.close()
    inference = _client(actors.inference)
    out["key spend (GET /api/v1/key), busiest key"] = _timed(
        lambda: _get(inference, "/api/v1/key"), repeat
    )
    return out


def _settlement_timings(actors: Actors, repeat: int) -> tuple[dict[str, Any], dict[str, Any]]:
    from billing.settlement import UsageDraft, usage_settle_batch

    counter = iter(range(10**9))

    def batch() -> None:
        drafts = [UsageDraft(generation_id=f"gen-bench-{time.time_ns()}-{next(counter)}",
                             organization_id=actors.organization.pk, key_id=actors.busiest_key,
                             status="succeeded", cost=Decimal("0.0012"), model="openai/gpt-4o-mini",
                             provider="openai", prompt_tokens=100, completion_tokens=50)
                  for _ in range(100)]  # fmt: skip
        usage_settle_batch(drafts)

    from billing.wal import wal_position

    before = wal_position()
    batch()
    wal = (wal_position() or 0) - (before or 0)
    return {"settle a batch of 100": _timed(batch, repeat)}, {
        "wal_bytes_per_settled_request": wal // 100
    }


def _storage() -> dict[str, Any]:
    """Bytes per stored row (heap + indexes + TOAST) of the big tables, and the draft's size in
    the Redis stream (its JSON, as the outbox appends it)."""
    from django.db import connection

    from billing.settlement import UsageDraft

    out: dict[str, Any] = {}
    with connection.cursor() as cursor:
        for table in ("billing_usagerecord", "billing_ledgerentry", "billing_usagerollup",
                      "billing_usagerollupallkeys", "billing_usagerollupkeyday",
                      "billing_usagegeneration", "billing_ledgeridempotency"):  # fmt: skip
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [table])
            if not cursor.fetchone()[0]:
                continue
            # A partitioned table's own size is 0: its partitions' sizes are added.
            cursor.execute(f"SELECT count(*), pg_total_relation_size('{table}') + (SELECT "
                           "coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
                           f"WHERE inhparent = '{table}'::regclass) FROM {table}")  # fmt: skip
            rows, size = cursor.fetchone()
            size = int(size)  # numeric when partitions are summed
            out[table] = {
                "rows": rows,
                "mb": round(size / 2**20),
                "bytes_per_row": size // max(rows, 1),
            }
    draft = UsageDraft(generation_id="gen-" + "0" * 32, organization_id=1, key_id=1,
                       status="succeeded", cost=Decimal("0.00123"), model="openai/gpt-4o-mini",
                       requested_model="openai/gpt-4o-mini", provider="openai", prompt_tokens=512,
                       completion_tokens=256, latency_ms=420, ttft_ms=180)  # fmt: skip
    out["redis_draft_json_bytes"] = len(json.dumps(draft.to_json()))
    return out


def _csv_export(actors: Actors, database: str, days: int) -> dict[str, Any]:
    """Stream ``days`` of the organization's CSV export from a one-worker production-style server
    (gunicorn + uvicorn; no Redis, so no settler beside it) and sample the worker's RSS."""
    import urllib.request

    from django.utils import timezone

    from bench.procs import MemorySampler, Proc, free_port, rss_bytes, tree, wait_http

    port = free_port()
    env = {
        k: v
        for k, v in _environment(database).items()
        if k not in {"REDIS_URL", "CELERY_BROKER_URL"}
    }
    log_dir = Path("/tmp") / f"bench-scale-{os.getpid()}"
    log_dir.mkdir(exist_ok=True)
    server = Proc("csv-server", [sys.executable, "-m", "gunicorn", "routerhub.asgi:application",
                                 "-c", "deploy/gunicorn.conf.py", "--workers", "1",
                                 "--bind", f"127.0.0.1:{port}"], env=env, cwd=ROOT, log_dir=log_dir)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {actors.manage}"}
        wait_http(f"{base}/api/v1/usage?group_by=model&start=2000-01-01", timeout=60, proc=server,
                  headers=headers)  # fmt: skip
        before = sum(rss_bytes(pid) for pid in tree(server.pid) if pid != server.pid)
        start = (timezone.now() - timedelta(days=days)).date().isoformat()
        url = f"{base}/api/v1/usage/export.csv?start={start}"
        size = lines = 0
        with MemorySampler(server.pid, interval=0.1) as memory:
            began = time.perf_counter()
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=3600) as response:
                first_byte = time.perf_counter() - began
                while chunk := response.read(1 << 16):
                    size += len(chunk)
                    lines += chunk.count(b"\n")
            elapsed = time.perf_counter() - began
    finally:
        server.stop()
    return {"days": days, "rows": lines - 1, "bytes": size, "seconds": round(elapsed, 1),
            "first_byte_s": round(first_byte, 2), "worker_rss_before_mb": round(before / 2**20),
            "worker_rss_peak_mb": round(memory.results()["peak_workers"] / 2**20)}  # fmt: skip


def _table(results: dict[str, Any]) -> str:
    lines = [f"{'what':45} {'first ms':>9} {'p50 ms':>8} {'p95 ms':>8}"]
    for name, row in results["timings"].items():
        lines.append(f"{name:45} {row['first_ms']:>9} {row['p50_ms']:>8} {row['p95_ms']:>8}")
    csv_run = results.get("csv")
    if csv_run:
        lines.append(f"CSV export {csv_run['days']} d: {csv_run['rows']:,} rows, "
                     f"{csv_run['bytes'] / 2**20:.0f} MB in {csv_run['seconds']} s (first byte "
                     f"{csv_run['first_byte_s']} s); worker RSS {csv_run['worker_rss_before_mb']} MB "
                     f"before, {csv_run['worker_rss_peak_mb']} MB peak")  # fmt: skip
    return "\n".join(lines)


def _cell(row: dict[str, Any] | None) -> str:
    return f"{row['p50_ms']:,} / {row['p95_ms']:,} ({row['first_ms']:,})" if row else "—"


def markdown(stored: dict[str, Any], before: str, after: str) -> str:
    """The two labelled runs side by side (README's table)."""
    old, new = stored[before]["timings"], stored[after]["timings"]
    lines = [f"| largest organization | {before}: p50 / p95 (first) ms | {after}: p50 / p95 "
             "(first) ms |", "|---|---:|---:|"]  # fmt: skip
    for name, row in new.items():
        lines.append(f"| {name} | {_cell(old.get(name))} | {_cell(row)} |")
    for label in (before, after):
        run = stored[label].get("csv")
        if run:
            lines.append(f"| CSV export, {run['days']} days ({label}) | {run['rows']:,} rows, "
                         f"{run['bytes'] / 2**20:.0f} MB in {run['seconds']} s | worker RSS "
                         f"{run['worker_rss_before_mb']} → {run['worker_rss_peak_mb']} MB peak |")  # fmt: skip
    return "\n".join(lines)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--organizations", type=int, default=1_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--database", default="rh_scale")
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded database")
    parser.add_argument("--keep", action="store_true", help="do not drop the database after")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--csv-days", type=int, default=30)
    parser.add_argument("--label", default="current")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "scale_results.json")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"),
                        help="print two stored runs of --out side by side (markdown) and exit")  # fmt: skip
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    if args.compare:
        print(markdown(json.loads(args.out.read_text()), *args.compare))
        return
    results: dict[str, Any] = {"label": args.label}
    if not args.skip_load:
        _recreate(args.database)
        shape = Shape(rows=args.rows, organizations=args.organizations, keys=args.keys)
        results["load"] = generate(_environment(args.database)["DATABASE_URL"], shape)
        print(f"loaded: {results['load']}", flush=True)
    os.environ.update(_environment(args.database))
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    actors = Actors()
    settle, wal = _settlement_timings(actors, args.repeat)
    results["timings"] = (
        _usage_timings(actors, args.repeat) | _page_timings(actors, args.repeat) | settle
    )
    results["storage"] = _storage() | wal
    results["csv"] = _csv_export(actors, args.database, args.csv_days)
    print(_table(results))
    stored = json.loads(args.out.read_text()) if args.out.exists() else {}
    stored[args.label] = results
    args.out.write_text(json.dumps(stored, indent=1, default=str) + "\n")
    if not args.keep:
        from django.db import connections

        connections.close_all()
        import psycopg

        with psycopg.connect(PSQL_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.database}"')


if __name__ == "__main__":
    main()
