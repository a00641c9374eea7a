"""Profile RouterHub's hot path (not part of ``make bench``): one production worker under load,
sampled by py-spy (``pip install py-spy`` into .venv; it needs ptrace).

    python -m bench.profile_gateway [--seconds 15] [--concurrency 16] [--workers 1]

Writes bench/out/profile.collapsed (flamegraph input) and prints the heaviest frames, by
self time and by inclusive time, as file:line.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import threading
from pathlib import Path

from bench import gateway
from bench.procs import Proc, tree

PY_SPY = gateway.REPO / ".venv" / "bin" / "py-spy"


def top(collapsed: Path, limit: int = 25) -> str:
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
    out = [f"{total} samples", "", "self time:"]
    out += [f"  {n / total * 100:5.1f}%  {f}" for f, n in self_time.most_common(limit)]
    out += ["", "inclusive time (project code and main libraries):"]
    keep = ("/work/main/", "django", "httpx", "httpcore", "psycopg", "redis", "asgiref", "uvicorn")
    ranked = [(f, n) for f, n in inclusive.most_common(400) if any(k in f for k in keep)]
    out += [f"  {n / total * 100:5.1f}%  {f}" for f, n in ranked[:limit]]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL (CPU)")
    args = parser.parse_args()
    out = gateway.REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    try:
        target, _ = gateway.routerhub_alone(args.workers, out, procs)
        worker = next(pid for pid in tree(target.cpu_root) if pid != target.cpu_root)
        result: dict[str, object] = {}
        load = threading.Thread(target=lambda: result.update(gateway.loadgen(
            "throughput", target, 0, "--concurrency", str(args.concurrency),
            "--duration", str(args.seconds + 4), "--warmup-seconds", "1")))  # fmt: skip
        load.start()
        collapsed = out / "profile.collapsed"
        subprocess.run(
            [str(PY_SPY), "record", "--pid", str(worker), "--duration", str(args.seconds),
             "--format", "raw", "--rate", "500", "--output", str(collapsed), "--nonblocking",
             "--full-filenames", *(["--gil"] if args.gil else [])],
            check=True, capture_output=True,
        )  # fmt: skip
        load.join()
        print(f"load: {result.get('rps', 0):.0f} req/s, errors {result.get('errors')}")
        print(top(collapsed))
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
