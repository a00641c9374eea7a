"""The report of ``bench.tail_probe``: what the slowest requests (as the client saw them)
overlapped, against how often the same thing overlaps any request.

    python -m bench.tail_report [bench/out/tail]   # again, on the files of the last probe run
"""

from __future__ import annotations

import bisect
import json
import statistics
import sys
from pathlib import Path
from typing import Any

Event = tuple[str, float, float]
_SLOW_RUNQ_S = 0.0003  # the worker thread waited this long for a CPU during the request


def _load(out: Path) -> tuple[list[tuple[float, float]], dict[int, dict[str, Any]], list[Event]]:
    client = [
        tuple(r) for p in sorted(out.glob("client-*.json")) for r in json.loads(p.read_text())
    ]
    workers = {
        int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in out.glob("worker-*.json")
    }
    settler = [
        tuple(e) for p in out.glob("settler-*.json") for e in json.loads(p.read_text())["events"]
    ]
    return client, workers, settler  # type: ignore[return-value]


def _lock_windows(settler: list[Event]) -> list[Event]:
    """The account row's lock: from the end of a batch's charge to the end of its settle."""
    settles = sorted((e for e in settler if e[0] == "settle"), key=lambda e: e[1])
    starts = [e[1] for e in settles]
    windows = []
    for kind, _, end in settler:
        if kind != "charge":
            continue
        i = bisect.bisect_right(starts, end) - 1
        if i >= 0 and settles[i][2] >= end:
            windows.append(("lock", end - 0.0005, settles[i][2]))  # the statement's last 0.5 ms
    return windows


class _Index:
    """Events of one kind, sorted, for overlap queries."""

    def __init__(self, events: list[Event]) -> None:
        self.events = sorted(events, key=lambda e: e[1])
        self.starts = [e[1] for e in self.events]
        self.longest = max((e[2] - e[1] for e in self.events), default=0.0)

    def overlap(self, start: float, end: float) -> float:
        """Seconds of [start, end] covered by these events (overlaps among them counted twice)."""
        i = bisect.bisect_left(self.starts, start - self.longest)
        total = 0.0
        while i < len(self.events) and self.events[i][1] <= end:
            total += max(0.0, min(end, self.events[i][2]) - max(start, self.events[i][1]))
            i += 1
        return total


def _requests(out: Path) -> tuple[list[dict[str, Any]], list[str]]:
    client, workers, settler = _load(out)
    served = sorted(
        ((r["t0"], pid, r) for pid, w in workers.items() for r in w["records"] if "answered" in r),
        key=lambda x: x[0],
    )
    starts = [s[0] for s in served]
    beside: dict[str, _Index] = {}
    for kind in {e[0] for e in settler if not e[0].endswith("_cpu")}:
        beside[f"settler {kind}"] = _Index([e for e in settler if e[0] == kind])
    beside["settler lock"] = _Index(_lock_windows(settler))
    per_worker = {
        pid: {
            k: _Index([tuple(e) for e in w["events"] if e[0] == k])
            for k in {e[0] for e in w["events"]}
        }  # type: ignore[misc]
        for pid, w in workers.items()
    }
    kinds = sorted(set(beside) | {k for idx in per_worker.values() for k in idx})
    rows = []
    for sent, took in client:
        end = sent + took
        row: dict[str, Any] = {"sent": sent, "ms": took * 1000}
        i = bisect.bisect_left(starts, sent)
        if i < len(served) and served[i][0] <= end:
            _, pid, record = served[i]
            row["worker"] = record
            row["outside_ms"] = (took - record["answered"]) * 1000
            for kind, idx in per_worker[pid].items():
                row[kind] = idx.overlap(sent, end) * 1000
        for kind, idx in beside.items():
            row[kind] = idx.overlap(sent, end) * 1000
        rows.append(row)
    rows.sort(key=lambda r: r["ms"])
    return rows, kinds


def _share(rows: list[dict[str, Any]], test: Any) -> float:
    return sum(1 for r in rows if test(r)) / max(1, len(rows)) * 100


def report(out: Path) -> str:
    rows, kinds = _requests(out)
    n = len(rows)
    if not n:
        return "no requests recorded"
    slow = rows[int(0.99 * n) :]
    ms = [r["ms"] for r in rows]
    lines = [f"{n} requests (client side): p50 {ms[n // 2]:.2f}, p90 {ms[int(0.9 * n)]:.2f}, "
             f"p99 {ms[int(0.99 * n)]:.2f} ms; matched to a worker record: "
             f"{_share(rows, lambda r: 'worker' in r):.0f}%", "",
             f"{'overlapping':<24}{'all requests':>14}{'slowest 1%':>12}{'mean ms in slowest 1%':>24}"]  # fmt: skip
    tests = {kind: (lambda k: lambda r: r.get(k, 0) > 0)(kind) for kind in kinds}
    tests["worker waited for a CPU"] = lambda r: r.get("worker", {}).get("runq", 0) > _SLOW_RUNQ_S
    for name, test in tests.items():
        key = "runq" if name.startswith("worker waited") else name
        mean = statistics.mean(
            (r.get("worker", {}).get("runq", 0) * 1000 if key == "runq" else r.get(key, 0))
            for r in slow
        )
        lines.append(
            f"{name:<24}{_share(rows, test):>13.1f}%{_share(slow, test):>11.0f}%{mean:>24.2f}"
        )
    lines += ["", _steps(rows, slow), "", "slowest requests (ms):"]
    for row in rows[-min(25, n) :]:
        lines.append(_describe(row, kinds))
    return "\n".join(lines)


def _steps(rows: list[dict[str, Any]], slow: list[dict[str, Any]]) -> str:
    middle = rows[int(0.4 * len(rows)) : int(0.6 * len(rows))]
    names = sorted(
        {k for r in rows for k in r.get("worker", {}) if k not in ("t0",) and not k.startswith("@")}
    )
    out = [f"{'in the worker':<17}{'p40-p60 mean ms':>16}{'slowest 1% mean ms':>20}"]
    for name in ["outside_ms", *names]:

        def value(r: dict[str, Any], name: str = name) -> float:
            return (
                float(r.get(name, 0))
                if name == "outside_ms"
                else r.get("worker", {}).get(name, 0.0) * 1000
            )

        out.append(f"{name:<17}{statistics.mean(value(r) for r in middle):>16.2f}"
                   f"{statistics.mean(value(r) for r in slow):>20.2f}")  # fmt: skip
    return "\n".join(out)


def _describe(row: dict[str, Any], kinds: list[str]) -> str:
    worker = row.get("worker", {})
    steps = " ".join(f"{k}={v * 1000:.2f}" for k, v in worker.items()
                     if not k.startswith("@") and k not in ("t0", "answered", "oncpu", "runq") and v > 0.0003)  # fmt: skip
    beside = " ".join(f"[{k} {row[k]:.2f}]" for k in kinds if row.get(k, 0) > 0)
    return (f"  {row['ms']:6.2f}  worker {worker.get('answered', 0) * 1000:5.2f} "
            f"outside {row.get('outside_ms', 0):5.2f} cpu {worker.get('oncpu', 0) * 1000:4.2f} "
            f"runq {worker.get('runq', 0) * 1000:4.2f} | {steps} {beside}")  # fmt: skip


def pg_counters() -> dict[str, float]:
    """Autovacuum, checkpoints and WAL syncs of the bench database so far."""
    import psycopg

    from bench.gateway import PG, RH_DB

    with psycopg.connect(dbname=RH_DB, autocommit=True, **PG) as conn:  # type: ignore[arg-type]
        counters = {f"autovacuum {t}": float(c) for t, c in conn.execute(
            "SELECT relname, autovacuum_count + autoanalyze_count FROM pg_stat_user_tables "
            "WHERE relname LIKE 'billing_%'")}  # fmt: skip
        row = conn.execute("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal").fetchone()
        counters |= {"wal records": float(row[0]), "wal full page images": float(row[1]),
                     "wal bytes": float(row[2])}  # fmt: skip
        for view in ("pg_stat_checkpointer", "pg_stat_bgwriter"):
            try:
                got = conn.execute(f"SELECT * FROM {view}")
            except psycopg.Error:
                continue
            names = [c.name for c in got.description or []]
            values = got.fetchone() or ()
            counters |= {f"{view} {k}": float(v) for k, v in zip(names, values, strict=False)
                         if isinstance(v, int | float)}  # fmt: skip
    return counters


def pg_difference(before: dict[str, float], after: dict[str, float]) -> str:
    moved = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
    return "PostgreSQL during the runs: " + ", ".join(
        f"{k} +{v:g}" for k, v in sorted(moved.items())
    )


if __name__ == "__main__":
    print(
        report(
            Path(sys.argv[1])
            if len(sys.argv) > 1
            else Path(__file__).resolve().parent / "out" / "tail"
        )
    )
