"""Profile RouterHub's hot path (not part of ``make bench``): production workers under load,
one of them sampled by py-spy (installed in .venv; it needs ptrace).

    python -m bench.profile_gateway [--seconds 15] [--concurrency 16[,64,...]] [--workers 1]
        [--gil] [--native]

With several concurrencies the same server is loaded at each in turn, and the frames are
compared in CPU microseconds per request (samples x sampling interval / requests the sampled
worker answered): what grows with concurrency sorts first. Writes
bench/out/profile-c<N>.collapsed (flamegraph input) for each.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import threading
from pathlib import Path

from bench import gateway
from bench.procs import Proc, cpu_seconds, tree

PY_SPY = gateway.REPO / ".venv" / "bin" / "py-spy"
RATE = 500  # samples per second
KEEP = (str(gateway.REPO), "django", "httpx", "psycopg", "redis", "asgiref", "uvicorn", "asyncio")


def counters(collapsed: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """(self samples, inclusive samples, total samples) per frame."""
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        self_time[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return self_time, inclusive, total


def top(collapsed: Path, limit: int = 25) -> str:
    self_time, inclusive, total = counters(collapsed)
    out = [f"{total} samples", "", "self time:"]
    out += [f"  {n / total * 100:5.1f}%  {f}" for f, n in self_time.most_common(limit)]
    out += ["", "inclusive time (project code and main libraries):"]
    ranked = [(f, n) for f, n in inclusive.most_common(400) if any(k in f for k in KEEP)]
    out += [f"  {n / total * 100:5.1f}%  {f}" for f, n in ranked[:limit]]
    return "\n".join(out)


def compare(profiles: dict[int, tuple[Path, int]], limit: int = 30) -> str:
    """Frames in microseconds per request at each concurrency, largest growth first."""
    per_request: dict[int, tuple[collections.Counter[str], collections.Counter[str]]] = {}
    for concurrency, (path, requests) in profiles.items():
        self_time, inclusive, _ = counters(path)
        scale = 1e6 / RATE / max(requests, 1)
        per_request[concurrency] = (
            collections.Counter({f: n * scale for f, n in self_time.items()}),
            collections.Counter({f: n * scale for f, n in inclusive.items()}),
        )
    levels = sorted(per_request)
    low, high = levels[0], levels[-1]
    out = []
    for index, kind in enumerate(("self", "inclusive")):
        frames = set().union(*(per_request[c][index] for c in levels))
        if kind == "inclusive":
            frames = {f for f in frames if any(k in f for k in KEEP)}
        growth = sorted(
            frames, key=lambda f: per_request[low][index][f] - per_request[high][index][f]
        )
        out.append(f"\n{kind} time, us per request at c=" + " / ".join(map(str, levels)))
        for frame in growth[:limit]:
            values = " / ".join(f"{per_request[c][index][frame]:7.1f}" for c in levels)
            out.append(f"  {values}   {frame}")
    totals = " / ".join(f"{sum(per_request[c][0].values()):.0f}" for c in levels)
    out.insert(0, f"sampled us per request (all frames): {totals}")
    return "\n".join(out)


def profile_once(target: gateway.Target, worker: int, concurrency: int,
                 args: argparse.Namespace) -> tuple[Path, int]:  # fmt: skip
    """Load at ``concurrency`` and sample ``worker``; returns the profile and the requests the
    worker is estimated to have answered while sampled (its share by CPU of the tree)."""
    out = gateway.REPO / "bench" / "out"
    collapsed = out / f"profile-c{concurrency}.collapsed"
    result: dict[str, object] = {}
    load = threading.Thread(target=lambda: result.update(gateway.loadgen(
        "throughput", target, 0, "--concurrency", str(concurrency),
        "--duration", str(args.seconds + 4), "--warmup-seconds", "1")))  # fmt: skip
    load.start()
    flags = [*(["--gil"] if args.gil else []), *(["--native"] if args.native else [])]
    worker_cpu, tree_cpu = cpu_seconds(worker), cpu_seconds(target.cpu_root)
    subprocess.run(
        [str(PY_SPY), "record", "--pid", str(worker), "--duration", str(args.seconds),
         "--format", "raw", "--rate", str(RATE), "--output", str(collapsed), "--nonblocking",
         "--full-filenames", *flags],
        check=True, capture_output=True,
    )  # fmt: skip
    worker_cpu = cpu_seconds(worker) - worker_cpu
    tree_cpu = cpu_seconds(target.cpu_root) - tree_cpu
    load.join()
    rps = float(result.get("rps", 0) or 0)  # type: ignore[arg-type]
    requests = int(rps * args.seconds / args.workers)
    print(f"c={concurrency}: {rps:.0f} req/s, errors {result.get('errors')}; sampled worker "
          f"{worker_cpu:.2f} CPU s, tree {tree_cpu:.2f} CPU s, ~{requests} requests sampled, "
          f"worker CPU {worker_cpu / max(requests, 1) * 1e6:.0f} us per request")  # fmt: skip
    return collapsed, requests


def _is_worker(pid: int, master: int) -> bool:
    """A gunicorn worker, not the master or the usage settler (also the master's child)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return pid != master and b"usage_settler" not in cmdline


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")],
                        default=[16])  # fmt: skip
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL (CPU)")
    parser.add_argument("--native", action="store_true", help="C frames too (GC shows)")
    args = parser.parse_args()
    out = gateway.REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    try:
        target, _ = gateway.routerhub_alone(args.workers, out, procs)
        worker = next(pid for pid in tree(target.cpu_root) if _is_worker(pid, target.cpu_root))
        profiles = {c: profile_once(target, worker, c, args) for c in args.concurrency}
        if len(profiles) == 1:
            print(top(next(iter(profiles.values()))[0]))
        else:
            print(compare(profiles))
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
