"""Decision latency with and without a task hint (issue 20), learner-direct, in-process:

    nice .venv/bin/python -m bench.router_task_hint_latency --datasets ../shared/datasets

An 11-candidate router fitted on RouterBench ARC-Challenge's train file (3 folds), stored and
read back as a serving process loads a version (``artifacts``), then given a task-hint table of
57 tasks (MMLU's count; the file has one task, so its own fit keeps none) before the store. Each
decision is ``Predictor.rank`` at tradeoff 0 on a 2 KB prompt over the 11 candidates, with no
task and with a task (a row lookup and the blend); p50 and p99 of interleaved runs, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd

from training.learner import artifacts
from training.learner.task_hint import TaskHint
from training.learner.trainer import TrainerConfig, TrainingData, router_fit

ARC_NON_MODEL = {"Unnamed: 0", "prompt", "sample_id", "eval_name", "oracle_model_to_route_to"}
ITERATIONS = 2000


def _router(datasets: Path) -> tuple[object, list[str], list[str]]:
    frame = pd.read_csv(datasets / "routerbench_arc_challenge_train.csv")
    models = [c for c in frame.columns if "|" not in c and c not in ARC_NON_MODEL]
    scores = frame[models].fillna(0).to_numpy(float)
    costs = frame[[f"{m}|total_cost" for m in models]].fillna(0).to_numpy(float)
    prompts = frame["prompt"].astype(str).tolist()
    data = TrainingData(prompts, models, scores, costs, [True] * len(models))
    fit = router_fit(data, TrainerConfig(folds=3, threads=1))
    tasks = tuple(f"mmlu/subject_{i}" for i in range(57))
    means = np.random.default_rng(0).random((len(tasks), len(models)))
    fit.router.task_hint = TaskHint(tasks, means, 0.5, 0.0)
    files = artifacts.router_to_files(fit.router)
    digests = artifacts.files_digests(files)
    loaded = artifacts.router_from_files(files, digests, artifacts.manifest_checksum(digests))
    return loaded, prompts, models


def main() -> None:
    from training.predictor import Predictor

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    args = parser.parse_args()
    router, prompts, models = _router(args.datasets)
    predictor = Predictor(version_id=0, checksum="", router=router)  # type: ignore[arg-type]
    rng = random.Random(0)
    samples = []
    for _ in range(50):
        text = ""
        while len(text) < 2048:
            text += rng.choice(prompts) + "\n"
        samples.append(text[:2048])
    row, _, _ = predictor.task_row("mmlu/subject_7")
    timings: dict[str, list[float]] = {"without_task": [], "with_task": []}
    for i in range(ITERATIONS + 100):
        prompt = samples[i % len(samples)]
        for label in timings:
            started = time.perf_counter()
            hint = predictor.task_row("mmlu/subject_7")[0] if label == "with_task" else None
            predictor.rank(prompt, 0.0, models, None, None, hint)
            if i >= 100:  # the first hundred warm up
                timings[label].append((time.perf_counter() - started) * 1000)
    assert row is not None
    print(
        json.dumps(
            {
                "candidates": len(models),
                "prompt_bytes": 2048,
                **{
                    label: {
                        "p50_ms": round(float(np.percentile(t, 50)), 3),
                        "p99_ms": round(float(np.percentile(t, 99)), 3),
                    }
                    for label, t in timings.items()
                },
            }
        )
    )


if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
    django.setup()
    main()
