"""The routing decision of ``select`` alone (``Predictor.rank``), this tree beside another commit's.

    python -m bench.select_decision [--baseline main] [--decisions 3000] [--rounds 2]
        [--instructions] [--profile] [--datasets ../shared/datasets] [--json PATH]

A RouterBench ARC router (11 candidates, train split, 3 folds, trained once with this tree's
trainer and kept in ``bench/out/select_decision``) is loaded from its artifact files by each
code tree in its own process: this one and, with ``--baseline REV``, the tree of commit REV
(``git archive`` into a temporary directory). Each process reports:

- the load: artifact files to a predictor that decides at full speed (its first ranking included);
- decisions on 2 KB prompts at tradeoff 0.5: the first sight of each prompt (words never seen by
  this process) and the same prompts again, wall time p50/p99 per call;
- with ``--instructions``, instructions per decision counted by valgrind's callgrind (the process
  run twice, with and without the repeated decisions: the difference divided by their number),
  which a busy machine does not change;
- with ``--profile``, a cProfile table of the repeated decisions.

Rounds alternate the trees (baseline, this, baseline, this) so both see the same machine. The
trees must agree on every decision: the script compares the rankings and scores and says so.
Numbers are written, never asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PY = REPO / ".venv" / "bin" / "python"
OUT = REPO / "bench" / "out" / "select_decision"
DATASETS = REPO.parent / "shared" / "datasets"
ARC_TRAIN = "routerbench_arc_challenge_train.csv"
ARC_TEST = "routerbench_arc_challenge_test.csv"
ARC_NON_MODEL = {"Unnamed: 0", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to"}
PROMPT_BYTES = 2048
TRADEOFF = 0.5


# --- the router's artifacts, trained once ----------------------------------------------------------


def _train_child(datasets: Path, out: Path) -> None:
    """Train the ARC router with this tree's trainer and write its artifact files to ``out``
    (the file parsed as an upload is: gaps filled, duplicate prompts dropped)."""
    import django

    django.setup()
    import pandas as pd

    from training.ingest import dataset_parse
    from training.learner.artifacts import files_digests, manifest_checksum, router_to_files
    from training.learner.trainer import TrainerConfig, TrainingData, router_fit

    content = (datasets / ARC_TRAIN).read_bytes()
    header = pd.read_csv(datasets / ARC_TRAIN, nrows=0).columns
    models = [c for c in header if "|" not in c and c not in ARC_NON_MODEL]
    columns = {"prompt": "prompt", "scores": {m: m for m in models},
               "costs": {m: f"{m}|total_cost" for m in models}}  # fmt: skip
    parsed = dataset_parse(content, columns=columns)
    assert parsed.costs is not None
    data = TrainingData(prompts=parsed.prompts, models=models, scores=parsed.scores,
                        costs=parsed.costs, binary=parsed.binary, tasks=parsed.tasks)  # fmt: skip
    router = router_fit(data, TrainerConfig(folds=3)).router
    files = router_to_files(router)
    digests = files_digests(files)
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (out / name).write_bytes(content)
    manifest = {"digests": digests, "checksum": manifest_checksum(digests), "models": models}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _artifacts(datasets: Path) -> Path:
    source = (datasets / ARC_TRAIN).read_bytes()
    out = OUT / f"arc-{hashlib.sha256(source).hexdigest()[:12]}"
    if not (out / "manifest.json").exists():
        print(f"[select_decision] training the ARC router into {out}", flush=True)
        _run([str(PY), str(Path(__file__)), "--child-train", str(out), "--datasets",
              str(datasets)], REPO, _child_env(REPO))  # fmt: skip
    return out


# --- one code tree's measurements, in its own process ----------------------------------------------


def _prompts(datasets: Path, count: int, seed: int) -> list[str]:
    """2 KB prompts from the ARC test split: texts the router never saw in training."""
    import pandas as pd

    pool = pd.read_csv(datasets / ARC_TEST, usecols=["prompt"])["prompt"].astype(str).tolist()
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        text = ""
        while len(text) < PROMPT_BYTES:
            text += rng.choice(pool) + "\n"
        out.append(text[:PROMPT_BYTES])
    return out


def _load(artifacts: Path) -> Any:
    """A predictor from the artifact files, as ``training.predictor`` loads one (first ranking
    included: a cached predictor has always made one)."""
    import django

    django.setup()
    from training.learner.artifacts import router_from_files
    from training.predictor import Predictor

    manifest = json.loads((artifacts / "manifest.json").read_text())
    files = {name: (artifacts / name).read_bytes() for name in manifest["digests"]}
    router = router_from_files(files, manifest["digests"], manifest["checksum"])
    predictor = Predictor(1, manifest["checksum"], router)
    predictor.rank("warm-up", TRADEOFF)
    return predictor, manifest["models"]


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2], 4),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 4),
        "mean_ms": round(statistics.fmean(ordered), 4),
    }


def _timed(predictor: Any, prompts: list[str], models: list[str]) -> tuple[list[float], list[Any]]:
    samples, answers = [], []
    for prompt in prompts:
        started = time.perf_counter_ns()
        ranked = predictor.rank(prompt, TRADEOFF, models, None)
        samples.append((time.perf_counter_ns() - started) / 1e6)
        answers.append(ranked)
    return samples, answers


def _measure_child(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    predictor, models = _load(args.artifacts)
    load_ms = (time.perf_counter() - started) * 1000
    prompts = _prompts(args.datasets, args.prompts, seed=1)
    if args.callgrind_lib is not None:
        import ctypes

        marks = ctypes.CDLL(str(args.callgrind_lib))
        marks.measured_begin()
        _timed(predictor, prompts, models)
        marks.measured_end(b"first")
        marks.measured_begin()
        _timed(predictor, prompts * max(1, args.decisions // len(prompts)), models)
        marks.measured_end(b"repeated")
        return {}
    first, answers = _timed(predictor, prompts, models)
    repeated = prompts * max(1, args.decisions // len(prompts))
    if args.profile:
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        _timed(predictor, repeated, models)
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue(), file=sys.stderr)
    again, _ = _timed(predictor, repeated, models)
    return {
        "load_ms": round(load_ms, 1),
        "first_sight": _ms(first),
        "repeated": _ms(again),
        "decisions": len(again),
        "answers": [[(r.model, r.score, r.utility) for r in ranked] for ranked in answers],
    }


# --- running trees side by side --------------------------------------------------------------------


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} … failed:\n{result.stderr[-3000:]}")
    if "--profile" in argv:
        print(result.stderr, file=sys.stderr)
    return result.stdout


def _child_env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(PYTHONPATH=str(tree), DJANGO_SETTINGS_MODULE="routerhub.settings",
               ROUTERHUB_ENV="test", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONHASHSEED="0")  # fmt: skip
    return env


def _child_argv(args: argparse.Namespace, artifacts: Path, decisions: int) -> list[str]:
    argv = [str(PY), str(Path(__file__)), "--child-measure", str(artifacts), "--datasets",
            str(args.datasets), "--prompts", str(args.prompts), "--decisions", str(decisions)]  # fmt: skip
    return argv + (["--profile"] if args.profile else [])


_CALLGRIND_C = """
#include <valgrind/callgrind.h>
void measured_begin(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void measured_end(const char *name) { CALLGRIND_DUMP_STATS_AT(name); CALLGRIND_STOP_INSTRUMENTATION; }
"""


def _callgrind_lib(into: Path) -> Path:
    """A two-function library whose calls tell callgrind where the decisions start and end."""
    source, lib = into / "measured.c", into / "libmeasured.so"
    source.write_text(_CALLGRIND_C)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(source)], check=True)
    return lib


def _instructions(args: argparse.Namespace, tree: Path, artifacts: Path) -> dict[str, float]:
    """Instructions per decision, first sight and repeated, counted by callgrind between marks
    (the load runs uninstrumented)."""
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        lib = _callgrind_lib(Path(tmp))
        out = Path(tmp) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={out}", *_child_argv(args, artifacts, args.callgrind_decisions),
                "--callgrind-lib", str(lib)]  # fmt: skip
        _run([a for a in argv if a != "--profile"], tree, _child_env(tree))
        for dump in Path(tmp).glob("callgrind.out*"):
            text = dump.read_text()
            name = re.search(r"^desc: Trigger: Client Request: (\w+)", text, re.MULTILINE)
            total = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
            if name is not None and total is not None:
                counts[name[1]] = int(total[1])
    assert set(counts) == {"first", "repeated"}, f"callgrind dumps: {sorted(counts)}"
    repeats = max(1, args.callgrind_decisions // args.prompts) * args.prompts
    return {"first_sight": counts["first"] / args.prompts, "repeated": counts["repeated"] / repeats}


def _measure(args: argparse.Namespace, tree: Path, artifacts: Path) -> dict[str, Any]:
    out = _run(_child_argv(args, artifacts, args.decisions), tree, _child_env(tree))
    return dict(json.loads(out.splitlines()[-1]))


def _same(a: list[Any], b: list[Any]) -> str:
    """How the two trees' decisions compare (model order, and scores and utilities to 1e-9)."""
    if [[m for m, _, _ in r] for r in a] != [[m for m, _, _ in r] for r in b]:
        return "rankings DIFFER"
    worst = max(
        (abs(x - y) for ra, rb in zip(a, b, strict=True)
         for (_, *xs), (_, *ys) in zip(ra, rb, strict=True)
         for x, y in zip(xs, ys, strict=True)),
        default=0.0,
    )  # fmt: skip
    return f"same rankings, scores and utilities within {worst:.1e}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: this file also runs as a child in an older tree, whose bench.procs may
    # predate the helper.
    from bench.procs import export_revision

    artifacts = _artifacts(args.datasets)
    with tempfile.TemporaryDirectory(prefix="select-baseline-") as tmp:
        trees = {"this tree": REPO}
        if args.baseline:
            trees = {f"baseline {args.baseline}": export_revision(args.baseline, Path(tmp))} | trees
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                rounds[name].append(_measure(args, tree, artifacts))
        results: dict[str, Any] = {"prompt_bytes": PROMPT_BYTES, "candidates": 11,
                                   "loadavg": round(os.getloadavg()[0], 2), "trees": {}}  # fmt: skip
        for name, runs in rounds.items():
            best = min(runs, key=lambda r: r["repeated"]["p50_ms"])
            results["trees"][name] = {k: v for k, v in best.items() if k != "answers"}
            if args.instructions:
                counts = _instructions(args, trees[name], artifacts)
                results["trees"][name]["instructions"] = {k: round(v) for k, v in counts.items()}
        if args.baseline:
            answers = [rounds[name][0]["answers"] for name in trees]
            results["agreement"] = _same(answers[0], answers[1])
    return results


def _table(results: dict[str, Any]) -> str:
    names = list(results["trees"])
    rows = [
        "| `Predictor.rank`, 2 KB prompt, 11 candidates | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    trees = [results["trees"][n] for n in names]

    def row(label: str, cell: Any) -> None:
        rows.append(f"| {label} | " + " | ".join(cell(t) for t in trees) + " |")

    row("repeated prompts, p50 / p99 (ms)",
        lambda t: f"{t['repeated']['p50_ms']:.3f} / {t['repeated']['p99_ms']:.3f}")  # fmt: skip
    row("first sight of a prompt, p50 / p99 (ms)",
        lambda t: f"{t['first_sight']['p50_ms']:.3f} / {t['first_sight']['p99_ms']:.3f}")  # fmt: skip
    if all("instructions" in t for t in trees):
        row("instructions per decision, repeated prompts (callgrind)",
            lambda t: f"{t['instructions']['repeated']:,}")  # fmt: skip
        row("instructions per decision, first sight (callgrind)",
            lambda t: f"{t['instructions']['first_sight']:,}")  # fmt: skip
    row("load, artifact files to first decision (ms)", lambda t: f"{t['load_ms']:.0f}")
    note = f"Load average {results['loadavg']} on {os.cpu_count()} cores."
    if "agreement" in results:
        note += f" Decisions: {results['agreement']}."
    return "\n".join(rows) + "\n\n" + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Predictor.rank: this tree beside a baseline.")
    parser.add_argument("--baseline", default=None, help="a commit to compare with (e.g. main)")
    parser.add_argument("--decisions", type=int, default=3000, help="timed repeated decisions")
    parser.add_argument("--prompts", type=int, default=200, help="distinct 2 KB prompts")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--callgrind-decisions", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="print a cProfile table")
    parser.add_argument("--datasets", type=Path, default=DATASETS)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child-train", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-measure", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--callgrind-lib", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.datasets = args.datasets.resolve()
    if args.child_train is not None or args.child_measure is not None:
        # Run as a script, the first import path is bench/; a child imports the tree under test.
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
    if args.child_train is not None:
        _train_child(args.datasets, args.child_train)
        return 0
    if args.child_measure is not None:
        args.artifacts = args.child_measure
        print(json.dumps(_measure_child(args)))
        return 0
    if not (args.datasets / ARC_TRAIN).exists():
        print(f"{ARC_TRAIN} not found in {args.datasets}", file=sys.stderr)
        return 2
    results = run(args)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
