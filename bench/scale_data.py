"""Synthetic usage at scale for ``bench.scale``: organizations, keys, usage records and ledger
entries written straight into PostgreSQL with ``COPY`` (psycopg), no ORM.

The shape follows the issue's measurement: one large organization holds ``big_share`` of the rows
(2 million of 10 million by default), the rest spread evenly over the other organizations; keys
are picked with a skew inside an organization; every row with a cost has its ledger entry
``usage:<generation id>``. Secondary indexes are dropped for the load and rebuilt after it (their
definitions are read back from ``pg_indexes``), which is how a bulk load is done in PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from billing.partitions import month_add, month_floor, partition_ddl, partition_name

MODELS = [  # (model, provider, USD per 1k tokens): a catalog-like spread
    ("openai/gpt-4o-mini", "openai", 0.0006), ("openai/gpt-4o", "openai", 0.01),
    ("anthropic/claude-3.5-sonnet", "anthropic", 0.015), ("anthropic/claude-3-haiku", "anthropic", 0.00125),
    ("google/gemini-1.5-flash", "google", 0.0003), ("google/gemini-1.5-pro", "google", 0.005),
    ("meta-llama/llama-3.1-70b", "together", 0.0009), ("meta-llama/llama-3.1-8b", "groq", 0.0001),
    ("mistralai/mistral-large", "mistral", 0.006), ("deepseek/deepseek-chat", "deepseek", 0.0003),
]  # fmt: skip
ROUTERS = ["", "", "", "router/support", "router/code"]
STATUSES = ["succeeded"] * 97 + ["failed"] * 2 + ["aborted"]
TABLES = ("billing_usagerecord", "billing_ledgerentry")


@dataclass(frozen=True)
class Shape:
    rows: int = 10_000_000
    organizations: int = 1_000
    keys: int = 100_000
    days: int = 90
    big_share: float = 0.2
    seed: int = 21


def _copy(conn: psycopg.Connection[Any], sql: str, lines: Iterator[str]) -> None:
    with conn.cursor() as cursor, cursor.copy(sql) as copy:
        for chunk in lines:
            copy.write(chunk)


def _tenants(conn: psycopg.Connection[Any], shape: Shape, now: datetime) -> tuple[int, int]:
    """Organizations ``scale-0000``… with a large credit balance, and their inference keys;
    returns the first organization id and the first key id."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) + 1 FROM accounts_organization")
        first_org = int(cursor.fetchone()[0])  # type: ignore[index]  # one row
        cursor.execute("SELECT coalesce(max(id), 0) + 1 FROM accounts_apikey")
        first_key = int(cursor.fetchone()[0])  # type: ignore[index]  # one row
    orgs = range(first_org, first_org + shape.organizations)
    _copy(conn, "COPY accounts_organization (id, slug, name, is_personal, prompt_logging, "
          "created_at) FROM STDIN", iter(["".join(
              f"{o}\tscale-{o - first_org:04d}\tScale {o - first_org}\tf\tf\t{now.isoformat()}\n"
              for o in orgs)]))  # fmt: skip
    _copy(conn, "COPY billing_creditaccount (organization_id, balance, released, total_purchased, "
          "total_used, stripe_customer_id, budget_alert_sent, updated_at) FROM STDIN",
          iter(["".join(f"{o}\t1000000\t0\t1000000\t0\t\t{{}}\t{now.isoformat()}\n"
                        for o in orgs)]))  # fmt: skip
    per_org = shape.keys // shape.organizations
    lines = (
        f"{first_key + i}\t{first_org + i // per_org}\tkey-{i % per_org:03d}\tinference\t"
        f"rh-scale{i:07d}\t{i:064x}\t\\N\t\\N\t{now.isoformat()}\t[]\n"
        for i in range(per_org * shape.organizations)
    )
    _copy(conn, "COPY accounts_apikey (id, organization_id, name, scope, prefix, digest, "
          "created_by_id, created_by_role, created_at, allowed_models) FROM STDIN", lines)  # fmt: skip
    for table in ("accounts_organization", "accounts_apikey"):
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")  # fmt: skip
    return first_org, first_key


def _rows(shape: Shape, first_org: int, first_key: int, now: datetime) -> Iterator[tuple[str, str]]:
    """(usage lines, ledger lines) in chunks of 100k requests, oldest first."""
    rng = np.random.default_rng(shape.seed)
    per_org = shape.keys // shape.organizations
    start = now - timedelta(days=shape.days)
    span_us = shape.days * 86_400_000_000
    chunk = 100_000
    for offset in range(0, shape.rows, chunk):
        n = min(chunk, shape.rows - offset)
        big = rng.random(n) < shape.big_share
        org = np.where(big, 0, rng.integers(1, shape.organizations, n))
        key = np.minimum(rng.zipf(1.3, n) - 1, per_org - 1)
        model = rng.integers(0, len(MODELS), n)
        prompt = rng.integers(20, 4000, n)
        completion = rng.integers(1, 1500, n)
        status = rng.integers(0, len(STATUSES), n)
        router = rng.integers(0, len(ROUTERS), n)
        at_us = np.sort(rng.integers(offset * span_us // shape.rows,
                                     (offset + n) * span_us // shape.rows, n))  # fmt: skip
        usage, ledger = [], []
        for i in range(n):
            gid = f"gen-scale-{offset + i:09d}"
            name, provider, price = MODELS[model[i]]
            ok = STATUSES[status[i]] == "succeeded"
            cost = round((prompt[i] + completion[i]) * price / 1000, 8) if ok else 0.0
            at = (start + timedelta(microseconds=int(at_us[i]))).isoformat()
            o = first_org + int(org[i])
            k = first_key + int(org[i]) * per_org + int(key[i])
            usage.append(
                f"{o}\t{gid}\t{k}\t{name}\t{name}\t{provider}\t{ROUTERS[router[i]]}\t\\N\t"
                f"{prompt[i]}\t{completion[i]}\t0\t0\t{cost:.8f}\t{300 + prompt[i] // 10}\t\\N\t"
                f"{STATUSES[status[i]]}\t{'' if ok else 'upstream_error'}\tf\tf\t\t\t{at}\n"
            )
            if cost > 0:
                ledger.append(f"{o}\tusage\t{-cost:.8f}\t1000000\tusage:{gid}\t{name} via "
                              f"{provider}\t{gid}\t{at}\n")  # fmt: skip
        yield "".join(usage), "".join(ledger)


def _months_create(conn: psycopg.Connection[Any], first: datetime, last: datetime) -> None:
    """Where the tables are partitioned by month, the partitions of the loaded days (a fresh
    database has them only from its migration's month on: older rows would go to the default)."""
    for table in TABLES:
        if conn.execute(
            "SELECT to_regclass(%s)", [partition_name(table, month_floor(last))]
        ).fetchone() == (None,):
            continue  # not partitioned (the schema before billing.0011)
        month = month_floor(first)
        while month <= month_floor(last):
            if conn.execute(
                "SELECT to_regclass(%s)", [partition_name(table, month)]
            ).fetchone() == (None,):
                conn.execute(partition_ddl(table, month))
            month = month_add(month, 1)


def _secondary_indexes(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Plain (non-constraint) indexes of the big tables: dropped for the load, rebuilt after."""
    rows = conn.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = ANY(%s) AND NOT "
        "EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        [list(TABLES)],
    ).fetchall()
    return [(str(name), str(definition)) for name, definition in rows]


def _rollups(conn: psycopg.Connection[Any]) -> int | None:
    """Where the schema has daily rollups (which settlement maintains), build them from the
    loaded records, as the migration that introduced them does; returns their row count."""
    if conn.execute("SELECT to_regclass('billing_usagerollup')").fetchone() == (None,):
        return None
    conn.execute(
        "TRUNCATE billing_usagerollup, billing_usagerollupallkeys, billing_usagerollupkeyday"
    )
    conn.execute(
        "INSERT INTO billing_usagerollup (organization_id, day, key_id, model, provider, router, "
        "status, requests, prompt_tokens, completion_tokens, cost) SELECT organization_id, "
        "(created_at AT TIME ZONE 'UTC')::date, COALESCE(key_id, 0), model, provider, router, "
        "status, count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost) "
        "FROM billing_usagerecord GROUP BY 1, 2, 3, 4, 5, 6, 7"
    )
    conn.execute(
        "INSERT INTO billing_usagerollupallkeys (organization_id, day, model, provider, router, "
        "status, requests, prompt_tokens, completion_tokens, cost) SELECT organization_id, day, "
        "model, provider, router, status, sum(requests), sum(prompt_tokens), "
        "sum(completion_tokens), sum(cost) FROM billing_usagerollup GROUP BY 1, 2, 3, 4, 5, 6"
    )
    conn.execute(
        "INSERT INTO billing_usagerollupkeyday (organization_id, day, key_id, requests, "
        "prompt_tokens, completion_tokens, cost) SELECT organization_id, day, key_id, "
        "sum(requests), sum(prompt_tokens), sum(completion_tokens), sum(cost) "
        "FROM billing_usagerollup GROUP BY 1, 2, 3"
    )
    for table in ("billing_usagerollup", "billing_usagerollupallkeys", "billing_usagerollupkeyday"):
        conn.execute(f"VACUUM ANALYZE {table}")
    return int(conn.execute("SELECT count(*) FROM billing_usagerollup").fetchone()[0])  # type: ignore[index]  # one row


def generate(database_url: str, shape: Shape, log: Any = print) -> dict[str, Any]:
    """Load ``shape`` into the database; returns what was loaded and how long it took."""
    now = datetime.now().astimezone()
    began = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        _months_create(conn, now - timedelta(days=shape.days), now)
        indexes = _secondary_indexes(conn)
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        with conn.transaction():
            first_org, first_key = _tenants(conn, shape, now)
            loaded = 0
            for usage, ledger in _rows(shape, first_org, first_key, now):
                _copy(conn, "COPY billing_usagerecord (organization_id, generation_id, key_id, "
                      "model, requested_model, provider, router, router_version, prompt_tokens, "
                      "completion_tokens, cached_tokens, reasoning_tokens, cost, latency_ms, "
                      "ttft_ms, status, error_type, streamed, is_byok, prompt, flags, created_at) "
                      "FROM STDIN", iter([usage]))  # fmt: skip
                _copy(conn, "COPY billing_ledgerentry (organization_id, kind, amount, "
                      "balance_after, idempotency_key, description, reference, created_at) "
                      "FROM STDIN", iter([ledger]))  # fmt: skip
                loaded += usage.count("\n")
                if loaded % 1_000_000 == 0:
                    log(f"  {loaded:,} usage rows in {time.monotonic() - began:.0f} s")
        copied = time.monotonic() - began
        for _, definition in indexes:
            conn.execute(definition)
        for table in TABLES:
            conn.execute(f"VACUUM ANALYZE {table}")
        rolled = _rollups(conn)

    return {"rows": shape.rows, "organizations": shape.organizations, "keys": shape.keys,
            "days": shape.days, "big_share": shape.big_share, "first_organization": first_org,
            "copy_s": round(copied, 1), "rollup_rows": rolled, "total_s": round(time.monotonic() - began, 1)}  # fmt: skip
