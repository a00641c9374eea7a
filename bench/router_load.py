"""Loading a router version into a serving process: CPU, wall time and the longest GIL hold,
this tree beside another commit's, in one run.

    python -m bench.router_load [--baseline main] [--loads 5] [--rounds 2] [--activation]
        [--activation-rounds 1] [--datasets ../shared/datasets] [--json PATH]

The RouterBench ARC router of ``bench.select_decision`` (11 candidates, trained once, kept in
``bench/out``) as two sets of files: as older versions were stored (no ``serving.npz``) and with
the serving form this tree writes at training (``serving_file_of`` the same files, which is
what training stores). Each configuration loads in its own process, as ``predictor_for_version``
does (artifact files to a predictor that has ranked once): the baseline tree with the older
files, this tree with the older files (its fallback) and this tree with the serving form.

- load: wall time, process CPU (LightGBM's own threads included) and the loading thread's CPU;
- longest GIL hold: a thread ticking every 1 ms (``time.sleep(0.001)``) records the largest gap
  between two ticks while the load runs, beside the largest gap over an idle 0.3 s just before
  (the machine's own noise: a tick also waits for a core on a busy machine);
- this tree only: the load's steps (``router_load_steps``) and the largest thread CPU of one;
- the decisions of 40 prompts after the load, compared exactly across the configurations;
- with ``--activation``: ``bench.select_endpoint`` run in each tree (its activation measurement:
  the slowest select on fresh connections while version 2 is activated), 100 selects per server,
  on ``--database``/``--redis-url`` (``BENCH_DATABASE``/``BENCH_REDIS_URL``).

Rounds alternate the configurations. Numbers are written, never asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import linecache
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import select_decision as decision

REPO = decision.REPO
OUT = REPO / "bench" / "out" / "router_load"
IDLE_S = 0.3
SERVING_FILE = "serving.npz"


# --- the two file sets, prepared by this tree ----------------------------------------------------


def _prepare_child(source: Path, out: Path) -> None:
    import django

    django.setup()
    from training.learner import artifacts

    manifest = json.loads((source / "manifest.json").read_text())
    older = {n: (source / n).read_bytes() for n in manifest["digests"] if n != SERVING_FILE}
    digests = artifacts.files_digests(older)
    router = artifacts.router_from_files(older, digests, artifacts.manifest_checksum(digests))
    serving = dict(older, **{SERVING_FILE: artifacts.serving_file_of(router, older)})
    for name, files in (("older", older), ("serving", serving)):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for file, content in files.items():
            (folder / file).write_bytes(content)
        digests = artifacts.files_digests(files)
        (folder / "manifest.json").write_text(json.dumps({
            "digests": digests, "checksum": artifacts.manifest_checksum(digests),
            "models": manifest["models"]}))  # fmt: skip


# --- one configuration's loads, in its own process -----------------------------------------------


class _Ticker:
    """A thread that sleeps 1 ms at a time and keeps when it woke."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            time.sleep(0.001)
            self.ticks.append(time.perf_counter())

    def largest_gap(self, start: float, end: float) -> float:
        """The largest gap between ticks that overlaps [start, end] (ms)."""
        gaps = [b - a for a, b in itertools.pairwise(list(self.ticks)) if b >= start and a <= end]
        return max(gaps, default=0.0) * 1000

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _files(folder: Path) -> tuple[dict[str, bytes], dict[str, Any]]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return {n: (folder / n).read_bytes() for n in manifest["digests"]}, manifest


def _steps(files: dict[str, bytes], manifest: dict[str, Any]) -> dict[str, Any] | None:
    """This tree's load as steps (the first ranking one more): how many, and the largest
    thread CPU of one (ms) with where it ended (the innermost generator's function:line)."""
    from training.learner import artifacts
    from training.predictor import Predictor

    if not hasattr(artifacts, "router_load_steps"):
        return None
    steps = artifacts.router_load_steps(files, manifest["digests"], manifest["checksum"])
    cpu: list[tuple[float, str]] = []
    while True:
        started = time.thread_time()
        try:
            next(steps)
        except StopIteration as done:
            router = done.value
            break
        inner = steps
        while getattr(inner, "gi_yieldfrom", None) is not None:
            inner = inner.gi_yieldfrom  # type: ignore[assignment]
        frame = inner.gi_frame
        where = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()[:60]
        cpu.append(
            (
                (time.thread_time() - started) * 1000,
                f"{frame.f_code.co_name}:{frame.f_lineno} {where}",
            )
        )
    started = time.thread_time()
    Predictor(1, manifest["checksum"], router).rank("warm-up", decision.TRADEOFF)
    cpu.append(((time.thread_time() - started) * 1000, "first ranking"))
    top = sorted(cpu, reverse=True)[:3]
    return {"steps": len(cpu), "largest_step_cpu_ms": round(top[0][0], 2),
            "largest": [(round(ms, 2), where) for ms, where in top]}  # fmt: skip


def _measure_child(folder: Path, loads: int, datasets: Path) -> dict[str, Any]:
    import django

    django.setup()
    from training.learner.artifacts import router_from_files
    from training.predictor import Predictor

    files, manifest = _files(folder)
    rows, predictor = [], None
    ticker = _Ticker()
    for _ in range(loads):
        time.sleep(IDLE_S)
        started, cpu, thread_cpu = time.perf_counter(), time.process_time(), time.thread_time()
        router = router_from_files(files, manifest["digests"], manifest["checksum"])
        predictor = Predictor(1, manifest["checksum"], router)
        predictor.rank("warm-up", decision.TRADEOFF)
        ended = time.perf_counter()
        rows.append({
            "wall_ms": (ended - started) * 1000,
            "cpu_ms": (time.process_time() - cpu) * 1000,
            "thread_cpu_ms": (time.thread_time() - thread_cpu) * 1000,
            "gap_ms": ticker.largest_gap(started, ended),
            "idle_gap_ms": ticker.largest_gap(started - IDLE_S, started),
        })  # fmt: skip
    ticker.stop()
    assert predictor is not None
    prompts = decision._prompts(datasets, 40, seed=2)
    answers = [[(r.model, r.score, r.utility) for r in predictor.rank(p, decision.TRADEOFF)]
               for p in prompts]  # fmt: skip
    return {"loads": rows, "steps": _steps(files, manifest), "answers": answers}


# --- the run ---------------------------------------------------------------------------------------


def _child(tree: Path, argv: list[str]) -> dict[str, Any]:
    out = decision._run([str(decision.PY), str(Path(__file__)), *argv], tree,
                        decision._child_env(tree))  # fmt: skip
    return dict(json.loads(out.splitlines()[-1]))


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 2)

    return {"loads": len(rows), "wall_ms": med("wall_ms"), "cpu_ms": med("cpu_ms"),
            "thread_cpu_ms": med("thread_cpu_ms"), "gap_ms": med("gap_ms"),
            "gap_max_ms": round(max(r["gap_ms"] for r in rows), 2),
            "idle_gap_ms": med("idle_gap_ms"),
            "idle_gap_max_ms": round(max(r["idle_gap_ms"] for r in rows), 2)}  # fmt: skip


def _activation(args: argparse.Namespace, trees: dict[str, Path]) -> dict[str, Any]:
    out: dict[str, list[Any]] = {name: [] for name in trees}
    for _ in range(args.activation_rounds):
        for name, tree in trees.items():
            with tempfile.NamedTemporaryFile(suffix=".json") as result:
                argv = [str(decision.PY), "-m", "bench.select_endpoint", "--requests", "100",
                        "--database", args.database, "--redis-url", args.redis_url,
                        "--datasets", str(args.datasets), "--json", result.name]  # fmt: skip
                env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
                done = subprocess.run(argv, cwd=tree, env=env | {"PYTHONPATH": str(tree)},
                                      check=False, capture_output=True, text=True)  # fmt: skip
                if done.returncode != 0:
                    raise RuntimeError(f"select_endpoint in {tree} failed:\n{done.stderr[-3000:]}")
                answer = json.loads(Path(result.name).read_text())
            out[name].append({"loadavg": round(answer["loadavg"], 2)} | {
                server: answer["activation"][server] for server in ("gateway", "drf")})  # fmt: skip
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: this file also runs as a child in an older tree, whose bench.procs may
    # predate the helper.
    from bench.procs import export_revision

    source = decision._artifacts(args.datasets)
    sets = OUT / source.name
    if not (sets / "serving" / "manifest.json").exists():
        decision._run([str(decision.PY), str(Path(__file__)), "--child-prepare", str(source),
                       str(sets)], REPO, decision._child_env(REPO))  # fmt: skip
    results: dict[str, Any] = {"loadavg_before": os.getloadavg(), "configurations": {}}
    with tempfile.TemporaryDirectory(prefix="router-load-baseline-") as tmp:
        trees = {"this tree": REPO}
        configs = {"this tree, serving form": (REPO, "serving"),
                   "this tree, older files": (REPO, "older")}  # fmt: skip
        if args.baseline:
            base = export_revision(args.baseline, Path(tmp))
            trees = {f"baseline {args.baseline}": base} | trees
            configs = {f"baseline {args.baseline}, older files": (base, "older")} | configs
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
        for _ in range(args.rounds):
            for name, (tree, files) in configs.items():
                runs[name].append(_child(tree, ["--child-measure", str(sets / files), "--loads",
                                                str(args.loads), "--datasets", str(args.datasets)]))  # fmt: skip
        answers = [runs[name][0]["answers"] for name in configs]
        results["decisions"] = ("identical (models, scores and utilities exactly)"
                                if all(a == answers[0] for a in answers) else "DIFFER")  # fmt: skip
        for name, measured in runs.items():
            summary = _summary([row for one in measured for row in one["loads"]])
            results["configurations"][name] = summary | {"steps": measured[0]["steps"]}
        results["loadavg_after"] = os.getloadavg()
        if args.activation:
            results["activation"] = _activation(args, trees)
    return results


def _table(results: dict[str, Any]) -> str:
    names = list(results["configurations"])
    cells = [results["configurations"][n] for n in names]
    rows = ["| ARC router, 11 candidates | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names)]  # fmt: skip

    def row(label: str, cell: Any) -> None:
        rows.append(f"| {label} | " + " | ".join(cell(c) for c in cells) + " |")

    row("load wall, median (ms)", lambda c: f"{c['wall_ms']:.0f}")
    row("load CPU, process / loading thread, median (ms)",
        lambda c: f"{c['cpu_ms']:.0f} / {c['thread_cpu_ms']:.0f}")  # fmt: skip
    row("longest gap of a 1 ms ticker during the load, median / max (ms)",
        lambda c: f"{c['gap_ms']:.1f} / {c['gap_max_ms']:.1f}")  # fmt: skip
    row("same, idle 0.3 s before each load, median / max (ms)",
        lambda c: f"{c['idle_gap_ms']:.1f} / {c['idle_gap_max_ms']:.1f}")  # fmt: skip
    row("load steps, largest step's thread CPU (ms)",
        lambda c: "-" if c["steps"] is None
        else f"{c['steps']['steps']}, {c['steps']['largest_step_cpu_ms']:.1f}")  # fmt: skip
    row("largest step", lambda c: "-" if c["steps"] is None else c["steps"]["largest"][0][1])
    if "activation" in results:
        rows += ["", "| `bench.select_endpoint` activation, slowest select (ms) | gateway | DRF "
                 "| load average |", "|---|---:|---:|---:|"]  # fmt: skip
        for tree, measured in results["activation"].items():
            for one in measured:
                rows.append(f"| {tree} | {one['gateway']['slowest_ms']:.0f} | "
                            f"{one['drf']['slowest_ms']:.0f} | {one['loadavg']:.2f} |")  # fmt: skip
    before, after = results["loadavg_before"], results["loadavg_after"]
    note = (f"Loads: {cells[0]['loads']} per configuration. Load average {before[0]:.2f} before, "
            f"{after[0]:.2f} after, on {os.cpu_count()} cores. Decisions: {results['decisions']}.")  # fmt: skip
    return "\n".join(rows) + "\n\n" + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Router version load: this tree beside another.")
    parser.add_argument("--baseline", default=None, help="a commit to compare with (e.g. main)")
    parser.add_argument("--loads", type=int, default=5, help="loads per process")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--activation", action="store_true", help="also bench.select_endpoint")
    parser.add_argument("--activation-rounds", type=int, default=1)
    parser.add_argument("--database", default=os.environ.get("BENCH_DATABASE", "rh_bench_load"))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))  # fmt: skip
    parser.add_argument("--datasets", type=Path, default=decision.DATASETS)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child-prepare", nargs=2, type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-measure", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.datasets = args.datasets.resolve()
    if args.child_prepare is not None or args.child_measure is not None:
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
    if args.child_prepare is not None:
        _prepare_child(*args.child_prepare)
        return 0
    if args.child_measure is not None:
        print(json.dumps(_measure_child(args.child_measure, args.loads, args.datasets)))
        return 0
    results = run(args)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
