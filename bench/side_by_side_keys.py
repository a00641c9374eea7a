"""Issue 21's many-keys throughput, two versions side by side in one run (not part of
``make bench``): the same 100,000 keys (COPY, real digests, rpm/tpm limits on) in each
version's database, then throughput at 0 ms upstream with the load on the one bench key,
cycling over 1,000 keys and over all 100,000, at c=16 and c=64, alternating old and new
measurement by measurement (A-B, then B-A) so that the machine's other work weighs on both.

    python -m bench.side_by_side_keys --old main [--rounds 2] [--duration 10]

``--unknown`` adds a flood of 100,000 random keys that no database has (all 401s; its req/s
counts every answer). Servers, databases and Redis dbs are ``bench.side_by_side.old_and_new``'s
(``BENCH_DATABASE``, ``BENCH_REDIS_URL``; the old one on ``<database>_old`` and the next Redis db).
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from bench import gateway
from bench.gateway_keys import ACTIVE, KEYS, keys_add
from bench.procs import cpu_seconds
from bench.side_by_side import old_and_new


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", required=True, help="the commit to compare with (e.g. main)")
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each cell")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=gateway.Options.workers)
    parser.add_argument("--unknown", action="store_true",
                        help="also a flood of 100,000 random keys no database has (401s)")  # fmt: skip
    args = parser.parse_args()
    out = gateway.REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    plaintexts = [f"rh-live-k{i:06d}{secrets.token_urlsafe(24)}" for i in range(KEYS)]
    with old_and_new(args.old, args.workers, out) as versions:
        for target in versions.targets:  # one key pepper for both: the same keys' digests
            keys_add(versions.env, target.key, KEYS, out,
                     database=versions.databases[target.name], plaintexts=plaintexts)  # fmt: skip
        _alternate(versions.targets, versions.databases, plaintexts, args, out, versions.upstream)


def _alternate(targets: list[gateway.Target], databases: dict[str, str], plaintexts: list[str],
               args: argparse.Namespace, out: Path, upstream: str) -> None:  # fmt: skip
    results: dict[tuple[str, int, int], list[tuple[float, float, float]]] = {}
    rows = (*ACTIVE, 0) if args.unknown else ACTIVE  # 0: keys nobody has
    unknown = [f"rh-live-{secrets.token_urlsafe(32)}" for _ in range(KEYS)] if args.unknown else []
    flip = False
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for round_ in range(args.rounds):
        for active in rows:
            for concurrency in (16, 64):
                for target in targets[::-1] if flip else targets:
                    keys_file = out / f"keys-{active}-{target.name.split()[0]}.txt"
                    keys = [target.key] if active == 1 else plaintexts[:active] or unknown
                    keys_file.write_text("\n".join(keys) + "\n")
                    before = _cpu(target, databases[target.name])
                    res = gateway.loadgen("throughput", target, 0, "--concurrency",
                                          str(concurrency), "--duration", str(args.duration),
                                          "--timeout", "30", "--keys-file", str(keys_file))  # fmt: skip
                    after = _cpu(target, databases[target.name])
                    served = max(1, res["total_ok_including_warmup"] + res["errors"])
                    us = [(a - b) / served * 1e6 for a, b in zip(after, before, strict=True)]
                    gateway.clear_upstream(upstream)
                    cell = results.setdefault((target.name, active, concurrency), [])
                    rate = res["requests"] / args.duration if active == 0 else res["rps"]
                    cell.append((rate, us[0], us[1]))
                    print(f"round {round_ + 1} {target.name:<16} keys {active:>6} "
                          f"c={concurrency:<3} {rate:>7.0f} req/s  CPU/request: RouterHub "
                          f"{us[0]:.0f} us, PostgreSQL {us[1]:.0f} us  errors {res['errors']}  "
                          f"[other load {res['foreign_cores']:.2f} cores, "
                          f"loadavg {os.getloadavg()[0]:.1f}]", flush=True)  # fmt: skip
                flip = not flip
    print(f"\nmeans over {args.rounds} rounds (load average at end {os.getloadavg()}): req/s, "
          "then RouterHub / PostgreSQL CPU us per request")  # fmt: skip
    for active in rows:
        for concurrency in (16, 64):
            cells = [[sum(x) / len(x) for x in zip(*results[(t.name, active, concurrency)],
                                                  strict=True)] for t in targets]  # fmt: skip
            print(f"  keys {active:>6} c={concurrency:<3} "
                  + "  ".join(f"{t.name}: {c[0]:5.0f} req/s {c[1]:5.0f} / {c[2]:4.0f} us"
                              for t, c in zip(targets, cells, strict=True))
                  + f"  req/s new/old {cells[1][0] / cells[0][0]:.2f}")  # fmt: skip


def _cpu(target: gateway.Target, database: str) -> tuple[float, float]:
    """CPU seconds so far of ``target``'s process tree and of its database's PostgreSQL
    backends (its pooled connections live through the run)."""
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **gateway.PG) as conn:  # type: ignore[arg-type]
        pids = [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", [database]).fetchall()]  # fmt: skip
    return cpu_seconds(target.cpu_root), sum(cpu_seconds(pid) for pid in pids)


if __name__ == "__main__":
    main()
