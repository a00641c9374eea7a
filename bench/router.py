"""Router training benchmark: trains and evaluates through the service's own code path.

    python -m bench.router --datasets ../shared/datasets [--only mmlu|arc|mbpp|quality|quality_all|quality_mmlu]
        [--split-seed N] [--json out.json]

``make bench`` calls ``routing_benchmarks`` instead (``bench.run_all``): routing decision latency
(2 and 11 candidates) and training time, rows/second and peak memory at 1k, 14k and 100k rows
(MMLU resampled with replacement), each in its own subprocess.

Each benchmark runs in a fresh subprocess with a throwaway SQLite database and media folder:
the dataset is uploaded with ``training.services.dataset_create`` (validated by the Celery task,
run eagerly), a router is created and ``training_run_start`` trains it (eager Celery task, the
same ``training.execution`` body a worker runs). It prints the version's evaluation report,
training time, the process's peak memory (``ru_maxrss``, which includes LightGBM's native
memory), and routing decision latency through ``training.predictor``.

Data (fetch it yourself if you are not on the RouterHub development machine):
- ``routellm_mmlu.csv``: RouteLLM (lm-sys/RouteLLM, Apache-2.0) MMLU responses of
  Mixtral-8x7B-Instruct and GPT-4-1106, 57 subjects, contaminated prompts removed.
- ``routerbench_arc_challenge_{train,test}.csv``: RouterBench (withmartian/routerbench) zero-shot
  ARC-Challenge, 11 models, split as in the RouterDC repository.
- ``routerbench_mbpp_{train,test}.csv``: RouterBench MBPP (Python problems), same columns.
- The quality-only benchmark is built here from the two RouterBench pairs: ARC + MBPP train
  rows with the cost columns dropped (train), the test rows likewise (test); tasks by
  ``eval_name``.
- ``quality_mmlu`` is built from ``routellm_mmlu.csv``: each row's subject recovered from its
  position (``bench/router_mmlu.py``), tasks ``mmlu/<subject>``, halves within each subject,
  cross-fitted: trained on each half and tested on the other, both test halves pooled
  (``bench/router_crossfit.py``); ``--split-seed`` picks the halves.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.router_mmlu import MMLU_STRONG, MMLU_WEAK, SPLIT_SEED

MMLU_PRICES = {MMLU_WEAK: 0.24, MMLU_STRONG: 24.7}  # RouteLLM paper, $ per 1M tokens blended
ARC_NON_MODEL = {"Unnamed: 0", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to"}
LATENCY_ITERATIONS = 400


def _django(workdir: Path) -> None:
    os.environ.update(
        {
            "ROUTERHUB_ENV": "development",
            "ROUTERHUB_VAR_DIR": str(workdir),
            "MEDIA_ROOT": str(workdir / "media"),
            "CELERY_TASK_ALWAYS_EAGER": "true",
            "LOG_LEVEL": "WARNING",
        }
    )
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _organization() -> Any:
    from accounts.models import Organization

    return Organization.objects.get_or_create(slug="bench", defaults={"name": "Benchmark"})[0]


def _upload(organization: Any, path: Path, columns: dict[str, Any]) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from training import services

    dataset = services.dataset_create(
        organization=organization,
        name=path.name,
        upload=SimpleUploadedFile(path.name, path.read_bytes()),
        columns=columns,
        maximize=True,
    )
    dataset.refresh_from_db()
    if dataset.status != "ready":
        raise SystemExit(f"{path.name} did not validate: {dataset.errors[:3]}")
    return dataset


def _train(
    organization: Any, slug: str, candidates: list[str], dataset: Any, options: dict[str, Any]
) -> tuple[Any, float]:
    from training import services
    from training.models import TrainingRun

    router = services.router_create(
        organization=organization, slug=slug, name=slug, candidates=candidates
    )
    started = time.perf_counter()
    run = services.training_run_start(router=router, dataset=dataset, options=options)
    wall = time.perf_counter() - started
    run = TrainingRun.objects.select_related("version").get(pk=run.pk)
    if run.status != "succeeded" or run.version is None:
        raise SystemExit(f"training {slug} ended {run.status}: {run.error}")
    return run.version, wall


def _prompt_of_size(prompts: list[str], size: int, rng: random.Random) -> str:
    text = ""
    while len(text) < size:
        text += rng.choice(prompts) + "\n"
    return text[:size]


def _latency(
    version: Any, prompts: list[str], candidates: list[str]
) -> dict[str, dict[str, float]]:
    import numpy as np

    from training.predictor import predictor_for_version

    started = time.perf_counter()
    predictor = predictor_for_version(version)
    load_ms = (time.perf_counter() - started) * 1000
    rng = random.Random(0)
    results: dict[str, dict[str, float]] = {}
    for label, size in (("200B", 200), ("2KB", 2048), ("4KB", 4096)):
        samples = [_prompt_of_size(prompts, size, rng) for _ in range(50)]
        for prompt in samples[:10]:  # warm-up
            predictor.rank(prompt, 0.5, candidates, None)
        timings = []
        for i in range(LATENCY_ITERATIONS):
            prompt = samples[i % len(samples)]
            t0 = time.perf_counter()
            predictor.rank(prompt, 0.5, candidates, None)
            timings.append((time.perf_counter() - t0) * 1000)
        results[label] = {
            "p50_ms": round(float(np.percentile(timings, 50)), 3),
            "p99_ms": round(float(np.percentile(timings, 99)), 3),
        }
    results["load"] = {"ms": round(load_ms, 1)}
    return results


def bench_mmlu(datasets: Path) -> dict[str, Any]:
    """RouteLLM MMLU, 5-fold cross-validation: APGR, CPT(50%), CPT(80%)."""
    import pandas as pd

    organization = _organization()
    path = datasets / "routellm_mmlu.csv"
    columns = {"prompt": "prompt", "scores": {MMLU_WEAK: MMLU_WEAK, MMLU_STRONG: MMLU_STRONG}}
    dataset = _upload(organization, path, columns)
    version, wall = _train(
        organization, "mmlu", [MMLU_WEAK, MMLU_STRONG], dataset, {"prices": MMLU_PRICES, "folds": 5}
    )
    report = version.report
    prompts = pd.read_csv(path, usecols=["prompt"])["prompt"].tolist()
    return {
        "benchmark": "routellm_mmlu (5-fold CV, out-of-fold)",
        "rows": report["evaluation"]["rows"],
        "apgr": report["apgr"],
        "cpt50_percent": report["cpt50"],
        "cpt80_percent": report["cpt80"],
        "random": report["random"],
        "published_best": {"apgr": 0.603, "cpt50_percent": 35.40, "cpt80_percent": 70.31},
        "slices": report["slices"],
        "training_seconds": report["training_seconds"],
        "run_wall_seconds": round(wall, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "latency_2_candidates": _latency(version, prompts, [MMLU_WEAK, MMLU_STRONG]),
    }


def _routerbench_columns(
    train_path: Path, with_costs: bool = True
) -> tuple[list[str], dict[str, Any]]:
    import pandas as pd

    header = pd.read_csv(train_path, nrows=0).columns
    models = [c for c in header if "|" not in c and c not in ARC_NON_MODEL]
    columns: dict[str, Any] = {"prompt": "prompt", "scores": {m: m for m in models}}
    if with_costs:
        columns["costs"] = {m: f"{m}|total_cost" for m in models}
    return models, columns


def _tradeoff_zero_picks(
    version: Any, prompts: list[str], models: list[str], tasks: list[str] | None = None
) -> list[str]:
    """Each prompt's choice at tradeoff 0 through the predictor (as ``select`` decides), with
    each prompt's task as its hint when ``tasks`` are given."""
    from training.predictor import predictor_for_version

    predictor = predictor_for_version(version)
    hints = tasks or [None] * len(prompts)
    return [
        predictor.rank(p, 0.0, models, None, None, predictor.task_row(t)[0])[0].model
        for p, t in zip(prompts, hints, strict=True)
    ]


def _curve_summary(report: dict[str, Any]) -> dict[str, Any]:
    points = {(p["cost"], p["score"]) for p in report["curve"]}
    first = report["curve"][0]
    return {
        "aiq": report["aiq"],
        "aiq_zero_router": report["aiq_zero_router"],
        "aiq_gain": None
        if report["aiq"] is None or report["aiq_zero_router"] is None
        else round(report["aiq"] - report["aiq_zero_router"], 4),
        "distinct_curve_points": len(points),
        "tradeoff_0": {"score": first["score"], "cost": first["cost"], "share": first["share"]},
        "best_single": report["best_single"],
        "tradeoff_0_minus_best_single": round(first["score"] - report["best_single"]["score"], 4),
    }


def bench_routerbench(datasets: Path, task: str) -> dict[str, Any]:
    """RouterBench ``task``, train -> test: curve, score at half the best model's cost, AIQ."""
    import pandas as pd

    organization = _organization()
    train_path = datasets / f"routerbench_{task}_train.csv"
    models, columns = _routerbench_columns(train_path)
    train = _upload(organization, train_path, columns)
    test = _upload(organization, datasets / f"routerbench_{task}_test.csv", columns)
    version, wall = _train(organization, task, models, train, {"test_dataset": test.pk})
    report = version.report
    best = report["best_single"]
    budget = 0.5 * best["cost"]
    affordable = [p for p in report["curve"] if p["cost"] <= budget]
    top = max(affordable, key=lambda p: p["score"]) if affordable else None
    prompts = pd.read_csv(train_path, usecols=["prompt"])["prompt"].tolist()
    return {
        "benchmark": f"routerbench_{task} (train -> test)",
        "rows": report["evaluation"]["rows"],
        **_curve_summary(report),
        "curve": [{k: p[k] for k in ("tradeoff", "score", "cost")} for p in report["curve"][::2]],
        "score_at_half_best_cost": None if top is None else top["score"],
        "ratio_to_best_at_half_cost": None
        if top is None
        else round(top["score"] / best["score"], 4),
        "tradeoff_at_half_best_cost": None if top is None else top["tradeoff"],
        "cost_at_best_single_quality": report["cost_at_best_single_quality"],
        "oracle": report["oracle"],
        "verdict": report["verdict"],
        "slices": report["slices"],
        "training_seconds": report["training_seconds"],
        "run_wall_seconds": round(wall, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "latency_11_candidates": _latency(version, prompts, models),
    }


def bench_arc(datasets: Path) -> dict[str, Any]:
    return bench_routerbench(datasets, "arc_challenge")


def bench_mbpp(datasets: Path) -> dict[str, Any]:
    return bench_routerbench(datasets, "mbpp")


QUALITY_TASKS = ("arc_challenge", "mbpp")
QUALITY_MODELS = 7  # the cheapest models of the RouterBench files: similar prices, no GPT-4


def bench_quality(datasets: Path) -> dict[str, Any]:
    """Quality-only routing across the 7 cheapest RouterBench models (by mean cost on the train
    files: similar prices, and no model best at everything) and two tasks: the ARC and MBPP
    train files combined with their cost columns dropped (train), the test files likewise (test).
    Tradeoff 0 against the best single model and against the per-task best model (chosen on the
    train rows: the floor a router that recognises the task reaches), per task with intervals."""
    return quality_benchmark(datasets, QUALITY_TASKS, QUALITY_MODELS)


def bench_quality_all(datasets: Path) -> dict[str, Any]:
    """The same two tasks with all 11 RouterBench models, costs dropped (GPT-4 included)."""
    return quality_benchmark(datasets, QUALITY_TASKS, None)


def _quality_models(datasets: Path, tasks: tuple[str, ...], count: int | None) -> list[str]:
    """The RouterBench models, or the ``count`` cheapest by mean cost on the train files."""
    import pandas as pd

    everyone, _ = _routerbench_columns(datasets / f"routerbench_{tasks[0]}_train.csv", False)
    if count is None:
        return everyone
    train_costs = pd.concat([pd.read_csv(datasets / f"routerbench_{t}_train.csv") for t in tasks])[
        [f"{m}|total_cost" for m in everyone]
    ].mean()
    cheapest = sorted(train_costs)[:count]
    return [m for m in everyone if train_costs[f"{m}|total_cost"] in cheapest]


def quality_benchmark(datasets: Path, tasks: tuple[str, ...], count: int | None) -> dict[str, Any]:
    """Quality-only routing on the RouterBench ``tasks`` (train files -> test files, costs
    dropped) across ``count`` cheapest models (None: all)."""
    import pandas as pd

    models = _quality_models(datasets, tasks, count)
    frames: dict[str, pd.DataFrame] = {}
    for split in ("train", "test"):
        parts = [pd.read_csv(datasets / f"routerbench_{t}_{split}.csv") for t in tasks]
        frame = pd.concat([p[["prompt", "eval_name", *models]] for p in parts])
        frames[split] = frame.drop_duplicates("prompt").reset_index(drop=True)
    title = (
        f"quality-only: RouterBench {' + '.join(tasks)}, "
        f"{'all' if count is None else f'{count} cheapest'} models, costs dropped (train -> test)"
    )
    return quality_run(frames, models, "eval_name", "quality", title)


def bench_quality_mmlu(datasets: Path, seed: int = SPLIT_SEED) -> dict[str, Any]:
    """Quality-only routing on RouteLLM's MMLU with its real subjects (``bench/router_mmlu.py``):
    tasks ``mmlu/<subject>``, each subject split in halves (numpy ``seed``), costs dropped,
    cross-fitted (``quality_crossfit_run``: each half trains the fit that tests the other);
    against the best single model and the per-subject best (chosen on each fit's train half)."""
    from bench.router_mmlu import mmlu_quality_frames

    title = (
        "quality-only: RouteLLM MMLU, tasks mmlu/<subject> (57), halves within each subject "
        f"(split seed {seed})"
    )
    return quality_crossfit_run(
        mmlu_quality_frames(datasets, seed), [MMLU_WEAK, MMLU_STRONG], "task", "quality-mmlu", title
    )


def quality_run(
    frames: dict[str, Any], models: list[str], task: str, slug: str, title: str
) -> dict[str, Any]:
    """Upload ``frames`` (train and test: prompt, ``task``, one score column per model) through
    the service, train with the test file held out, and score tradeoff 0 against the best single
    model and the per-task floor (each task's best model on the train rows), with intervals."""
    from bench.router_crossfit import quality_summary

    result, rows = quality_fit(frames, models, task, slug)
    return {"benchmark": title, **result, **quality_summary(rows, models)}


def quality_crossfit_run(
    frames: dict[str, Any], models: list[str], task: str, slug: str, title: str
) -> dict[str, Any]:
    """``quality_run`` both ways (``bench/router_crossfit.py``): train on ``frames["train"]``
    and test on ``frames["test"]``, then the halves swapped; the summary pools both test halves
    (every row scored once, by a fit that never saw it), and ``halves`` keeps each fit's own."""
    from bench.router_crossfit import pooled, quality_summary, swapped

    fits = [
        quality_fit(frames, models, task, slug),
        quality_fit(swapped(frames), models, task, f"{slug}-swapped"),
    ]
    halves = [
        {"direction": name, **result, **quality_summary(rows, models)}
        for name, (result, rows) in zip(("train -> test", "test -> train"), fits, strict=True)
    ]
    return {
        "benchmark": title,
        "protocol": "cross-fitted: train -> test and test -> train, both test halves pooled",
        "models": models,
        "rows": sum(len(f) for f in frames.values()),
        **quality_summary(pooled([rows for _, rows in fits]), models),
        "training_seconds": [h["training_seconds"] for h in halves],
        "peak_rss_mb": max(h["peak_rss_mb"] for h in halves),
        "halves": halves,
    }


def quality_fit(
    frames: dict[str, Any], models: list[str], task: str, slug: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One train -> test fit through the service: the report's side of ``quality_run``'s result,
    and the test rows' per-row scores (``quality_summary``'s input)."""
    import numpy as np

    from training.learner import metrics

    organization = _organization()
    columns = {"prompt": "prompt", "scores": {m: m for m in models}, "task": task}
    with tempfile.TemporaryDirectory(prefix="rh-bench-quality-") as tmp:
        uploads = {}
        for split, frame in frames.items():
            path = Path(tmp) / f"{slug}_{split}.csv"
            frame.to_csv(path, index=False)
            uploads[split] = _upload(organization, path, columns)
    version, wall = _train(
        organization, slug, models, uploads["train"], {"test_dataset": uploads["test"].pk}
    )
    report = version.report
    train, test = frames["train"], frames["test"]
    scores = test[models].fillna(0).to_numpy(float)
    prompts = test["prompt"].astype(str).tolist()
    task_best = {
        name: models[int(np.argmax(train.loc[train[task] == name, models].fillna(0).mean()))]
        for name in train[task].unique()
    }
    rows = {
        "scores": scores,
        "routed": _picked(scores, models, _tradeoff_zero_picks(version, prompts, models)),
        "floor": scores[np.arange(len(test)), [models.index(task_best[t]) for t in test[task]]],
        "hinted": _picked(
            scores,
            models,
            _tradeoff_zero_picks(version, prompts, models, test[task].astype(str).tolist()),
        ),
    }
    hints = dict(report["evaluation"].get("task_hints") or {})
    hints.pop("curve_with_hints", None)
    result = {
        "models": models,
        "rows": len(test),
        "train_rows": len(train),
        "per_task_best_floor": {"models": task_best},
        "report_task_hints": hints,
        "report_tradeoff_0_score": report["curve"][0]["score"],
        "incumbents": report["evaluation"].get("incumbents"),
        "verdict": report["verdict"],
        "report_slices": report["slices"],
        "slices": metrics.slice_table(test[task].tolist(), rows["routed"], scores, models),
        "training_seconds": report["training_seconds"],
        "run_wall_seconds": round(wall, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    return result, rows


def _picked(scores: Any, models: list[str], picks: list[str]) -> Any:
    import numpy as np

    return scores[np.arange(len(scores)), [models.index(m) for m in picks]]


def bench_training(datasets: Path, csv_path: Path, folds: int, latency: bool) -> dict[str, Any]:
    """Upload ``csv_path`` (a resample of the MMLU dataset, see ``resample_mmlu``) and train a
    2-candidate router on it; time the upload's validation and the training run."""
    import pandas as pd

    organization = _organization()
    columns = {"prompt": "prompt", "scores": {MMLU_WEAK: MMLU_WEAK, MMLU_STRONG: MMLU_STRONG}}
    started = time.perf_counter()
    dataset = _upload(organization, csv_path, columns)
    validate_s = time.perf_counter() - started
    options = {"prices": MMLU_PRICES, "folds": folds}
    version, wall = _train(organization, "mmlu", [MMLU_WEAK, MMLU_STRONG], dataset, options)
    report = version.report
    rows = int(report["evaluation"].get("dataset_rows", report["evaluation"]["rows"]))
    out: dict[str, Any] = {
        "rows": rows,
        "cross_validated_rows": int(report["evaluation"]["rows"]),  # a sample past 50k
        "folds": folds,
        "upload_validate_seconds": round(validate_s, 2),
        "training_seconds": report["training_seconds"],  # featurize + CV folds + final fit
        "run_wall_seconds": round(wall, 2),  # + loading the dataset, evaluation, artifacts
        "rows_per_second": round(rows / report["training_seconds"], 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),  # the whole child: upload, validation, training
    }
    if latency:
        prompts = pd.read_csv(datasets / "routellm_mmlu.csv", usecols=["prompt"])["prompt"]
        out["latency_2_candidates"] = _latency(version, prompts.tolist(), [MMLU_WEAK, MMLU_STRONG])
    return out


def bench_arc_latency(datasets: Path) -> dict[str, Any]:
    """Decision latency with 11 candidates: a RouterBench ARC router (train split, 3 folds)."""
    import pandas as pd

    organization = _organization()
    train_path = datasets / "routerbench_arc_challenge_train.csv"
    header = pd.read_csv(train_path, nrows=0).columns
    models = [c for c in header if "|" not in c and c not in ARC_NON_MODEL]
    columns = {
        "prompt": "prompt",
        "scores": {m: m for m in models},
        "costs": {m: f"{m}|total_cost" for m in models},
    }
    train = _upload(organization, train_path, columns)
    version, _ = _train(organization, "arc", models, train, {"folds": 3})
    prompts = pd.read_csv(train_path, usecols=["prompt"])["prompt"].tolist()
    return {
        "candidates": len(models),
        "rows": version.report["evaluation"]["rows"],
        "training_seconds": version.report["training_seconds"],
        "latency_11_candidates": _latency(version, prompts, models),
    }


def resample_mmlu(datasets: Path, rows: int, path: Path, seed: int = 0) -> None:
    """``rows`` rows drawn with replacement from routellm_mmlu.csv; each prompt gets a distinct
    suffix so the dataset's de-duplication keeps every row."""
    import pandas as pd

    frame = pd.read_csv(datasets / "routellm_mmlu.csv")
    sample = frame.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)
    sample["prompt"] = sample["prompt"].astype(str) + [f"\n(#{i})" for i in range(rows)]
    sample.to_csv(path, index=False)


TRAINING_ROWS = (1_000, 14_000, 100_000)  # 500_000 (DATASET_MAX_ROWS) with --training-rows


def routing_benchmarks(datasets: Path, *, big_folds: int = 3, log: Any = print,
                       training_rows: tuple[int, ...] = TRAINING_ROWS) -> dict[str, Any]:  # fmt: skip
    """For ``make bench``: decision latency (2 candidates from the 14k MMLU router, 11 from the
    ARC router) and training throughput; each measurement in a fresh subprocess."""
    datasets = datasets.resolve()
    needed = ["routellm_mmlu.csv", "routerbench_arc_challenge_train.csv"]
    missing = [n for n in needed if not (datasets / n).exists()]
    if missing:
        return {"skipped": f"datasets not found in {datasets}: {', '.join(missing)} "
                           "(see bench/router.py's docstring; pass --datasets)"}  # fmt: skip
    results: dict[str, Any] = {"datasets": str(datasets), "training": {}}
    with tempfile.TemporaryDirectory(prefix="rh-bench-rows-") as tmp:
        for rows in training_rows:
            folds = 5 if rows < 50_000 else big_folds
            csv_path = Path(tmp) / f"mmlu_resampled_{rows}.csv"
            resample_mmlu(datasets, rows, csv_path)
            log(f"routing benchmark: train on {rows:,} resampled MMLU rows ({folds}-fold CV)")
            started = time.monotonic()
            extra = ["--rows-csv", str(csv_path), "--folds", str(folds)]
            if rows == 14_000:
                extra.append("--latency")
            res = _child("training", datasets, extra, timeout=1200 * max(1, rows // 100_000))
            if "rows" in res:
                res["ms_per_row"] = round(1000 * res["training_seconds"] / res["rows"], 3)
                res["peak_rss_kb_per_row"] = round(1024 * res["peak_rss_mb"] / res["rows"], 2)
            res["child_wall_seconds"] = round(time.monotonic() - started, 1)
            results["training"][str(rows)] = res
            csv_path.unlink()
    log("routing benchmark: ARC router (11 candidates) for decision latency")
    arc = _child("arc_latency", datasets, [])
    mmlu = results["training"]["14000"].get("latency_2_candidates", {})
    results["decision_latency"] = {
        "2_candidates": mmlu,
        "11_candidates": arc.get("latency_11_candidates", arc),
        "arc_router": {k: v for k, v in arc.items() if k != "latency_11_candidates"},
        "method": "training.predictor rank(): featurize + score + order, one prompt at a time, "
        f"{LATENCY_ITERATIONS} timed calls per size after 10 warm-up",
    }
    return results


def _child(name: str, datasets: Path, extra: list[str], timeout: float = 1200) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.router", "--child", "--only", name,
            "--datasets", str(datasets), *extra]  # fmt: skip
    run = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if run.returncode != 0:
        return {"error": run.stderr.strip()[-1500:]}
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


BENCHES = {
    "mmlu": bench_mmlu,
    "arc": bench_arc,
    "mbpp": bench_mbpp,
    "quality": bench_quality,
    "quality_all": bench_quality_all,
    "quality_mmlu": bench_quality_mmlu,
}
CHILD_ONLY = ("training", "arc_latency")


def _run_one(name: str, datasets: Path, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rh-bench-router-") as workdir:
        _django(Path(workdir))
        if name == "training":
            return bench_training(datasets, args.rows_csv, args.folds, args.latency)
        if name == "arc_latency":
            return bench_arc_latency(datasets)
        if name == "quality_mmlu":
            return bench_quality_mmlu(datasets, args.split_seed)
        return BENCHES[name](datasets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--only", choices=sorted(BENCHES) + list(CHILD_ONLY))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows-csv", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--folds", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--latency", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--split-seed", type=int, default=SPLIT_SEED, help="quality_mmlu's halves (default 0)"
    )
    args = parser.parse_args()
    datasets = args.datasets.resolve()
    if not (datasets / "routellm_mmlu.csv").exists():
        raise SystemExit(f"datasets not found in {datasets} (see this module's docstring)")
    if args.child:
        print(json.dumps(_run_one(args.only, datasets, args)))
        return
    results = {}
    if args.only in CHILD_ONLY:
        raise SystemExit(f"--only {args.only} is for make bench (bench.run_all)")
    for name in [args.only] if args.only else list(BENCHES):
        # A fresh process per benchmark so peak memory belongs to that benchmark alone.
        output = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.router",
                "--child",
                "--only",
                name,
                "--datasets",
                str(datasets),
                "--split-seed",
                str(args.split_seed),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results[name] = json.loads(output.strip().splitlines()[-1])
        print(json.dumps(results[name], indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
