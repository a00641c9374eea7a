"""Gateway throughput with 100,000 keys in the key table (issue 21), inside ``make bench``.

Adds 100,000 inference keys to the bench organization of ``routerhub_bench`` with COPY (real
digests under the server's pepper, rpm/tpm limits on like the bench key's), then measures
RouterHub's throughput at c=16 and c=64 with the load on the one bench key, cycling over 1,000
of the new keys, and cycling over all 100,000 (every request a key nobody used for ~100 s: a
key-cache miss and a new rate-limit lease each time, the worst case).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KEYS = 100_000
ACTIVE = (1, 1_000, KEYS)  # how many distinct keys the load cycles through


def keys_add(env: dict[str, str], bench_key: str, count: int, out: Path, *, database: str = "",
             plaintexts: list[str] | None = None) -> list[str]:  # fmt: skip
    """COPY ``count`` keys (or ``plaintexts``) into the bench key's organization in
    ``database`` (the bench's by default); returns their plaintexts."""
    import psycopg

    from bench.gateway import PG, RH_DB

    pepper = env["API_KEY_PEPPER"].encode()

    def digest(plaintext: str) -> str:
        return hmac.new(pepper, plaintext.encode(), hashlib.sha256).hexdigest()

    if plaintexts is None:
        plaintexts = [f"rh-live-k{i:06d}{secrets.token_urlsafe(24)}" for i in range(count)]
    now = datetime.now(UTC).isoformat()
    with psycopg.connect(dbname=database or RH_DB, **PG) as conn:  # type: ignore[arg-type]
        row = conn.execute(
            "SELECT organization_id FROM accounts_apikey WHERE digest = %s", [digest(bench_key)]
        ).fetchone()
        assert row is not None, "the bench key is not in the database"
        lines = "".join(
            f"{row[0]}\tbench-{i:06d}\tinference\t{p[:16]}\t{digest(p)}\t\\N\t\\N\t{now}\t[]"
            f"\t1000000000\t2000000000\n"
            for i, p in enumerate(plaintexts)
        )
        with (
            conn.cursor() as cursor,
            cursor.copy(
                "COPY accounts_apikey (organization_id, name, scope, prefix, digest, created_by_id, "
                "created_by_role, created_at, allowed_models, rpm, tpm) FROM STDIN"
            ) as copy,
        ):
            copy.write(lines)
        conn.execute("ANALYZE accounts_apikey")
    return plaintexts


def measure_keys(
    rh: Any, env: dict[str, str], opts: Any, repoint: Any, upstream: str
) -> dict[str, Any]:
    """Throughput of ``rh`` (a ``bench.gateway.Target``) with 100k keys in the table;
    ``upstream`` is the 0 ms fake's URL."""
    from bench.gateway import clear_upstream, loadgen, log

    repoint(0)
    plaintexts = keys_add(env, rh.key, KEYS, opts.out)
    results: dict[str, Any] = {"keys_in_table": KEYS}
    for active in ACTIVE:
        keys_file = opts.out / f"keys-{active}.txt"
        keys_file.write_text("\n".join([rh.key] if active == 1 else plaintexts[:active]) + "\n")
        for concurrency in (16, 64):
            res = loadgen("throughput", rh, 0, "--concurrency", str(concurrency),
                          "--duration", str(opts.duration), "--timeout", "30",
                          "--keys-file", str(keys_file))  # fmt: skip
            results[f"active{active}_c{concurrency}"] = res
            clear_upstream(upstream)
            log(f"100k keys, load on {active:>6} keys, c={concurrency:<3} {res['rps']:>7.0f} req/s"
                f"  errors {res['errors']}  [other load {res['foreign_cores']:.2f} cores]")  # fmt: skip
    return results
