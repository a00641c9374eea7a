"""The sentence-embedding featurizer (``ROUTER_EMBEDDINGS=wordllama``) against the default, on the
quality-only benchmark built as ``bench.router`` builds it, with the learner directly.

    python -m bench.router_embeddings --datasets ../shared/datasets [--models 7|all] [--latency]

Choices are judged out of fold on the TRAIN rows only (the trainer's folds): the per-task floor,
the full router's nested tradeoff-0 decisions with and without the embedding, and three
sample-sample alternatives on the embedding (kNN, k-means cluster-best, a linear probe). The test
files' tradeoff-0 score of each featurizer is then printed, never used for a choice.
``--latency``: CPU time (``thread_time``, immune to preemption on a shared machine) of one
decision over the 11 RouterBench models for 200 B, 2 KB and 4 KB prompts, with and without it.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.router import QUALITY_TASKS, _prompt_of_size, _quality_models
from training.learner.clusters import clusters_fit
from training.learner.embedding import EMBEDDINGS_OFF, EMBEDDINGS_WORDLLAMA, encoder_load
from training.learner.featurizer import FeaturizerConfig
from training.learner.report import report_build
from training.learner.router import mix_key
from training.learner.trainer import TrainerConfig, TrainingData, _fold_ids, router_fit

FOLDS = 5


def quality_data(datasets: Path, models: list[str], split: str) -> TrainingData:
    """``bench.router``'s quality-only rows of ``split``: costs dropped, so rank-based costs."""
    parts = [pd.read_csv(datasets / f"routerbench_{t}_{split}.csv") for t in QUALITY_TASKS]
    frame = pd.concat([p[["prompt", "eval_name", *models]] for p in parts])
    frame = frame.drop_duplicates("prompt").reset_index(drop=True)
    scores = frame[models].fillna(0).to_numpy(float)
    ranks = np.argsort(np.argsort(scores.mean(axis=0))) + 1.0
    return TrainingData(
        prompts=frame["prompt"].astype(str).tolist(),
        models=models,
        scores=scores,
        costs=np.tile(ranks, (len(frame), 1)),
        binary=[True] * len(models),
        costs_known=False,
        tasks=frame["eval_name"].tolist(),
    )


def task_floor_oof(train: TrainingData, fold: np.ndarray) -> float:
    """Each fold's rows served by their task's best model on the other folds."""
    tasks, scores = np.array(train.tasks), train.scores
    served = np.zeros(len(tasks))
    for k in range(FOLDS):
        inner, outer = fold != k, fold == k
        for task in np.unique(tasks):
            best = int(np.argmax(scores[inner & (tasks == task)].mean(axis=0)))
            served[outer & (tasks == task)] = scores[outer & (tasks == task), best]
    return float(served.mean())


def _picked(scores: np.ndarray, picks: np.ndarray) -> float:
    return round(float(scores[np.arange(len(picks)), picks].mean()), 4)


def embedding_alternatives(train: TrainingData, fold: np.ndarray) -> dict[str, Any]:
    """Out-of-fold tradeoff-0 scores of kNN, cluster-best and linear-probe routers on the
    embedding alone."""
    from sklearn.linear_model import LogisticRegression

    vectors = encoder_load(EMBEDDINGS_WORDLLAMA).encode_many(train.prompts)
    scores = train.scores
    out: dict[str, Any] = {"knn": {}, "clusters": {}, "linear_probe": {}}
    for neighbours in (5, 10, 20, 40, 80):
        for prior in (2.0, 10.0):
            picks = np.zeros(len(scores), dtype=np.int64)
            for k in range(FOLDS):
                inner, outer = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
                similarity = vectors[outer] @ vectors[inner].T
                nearest = np.argsort(-similarity, axis=1)[:, :neighbours]
                weight = np.maximum(np.take_along_axis(similarity, nearest, 1), 0)
                estimate = (
                    np.einsum("ij,ijm->im", weight, scores[inner][nearest])
                    + prior * scores[inner].mean(axis=0)
                ) / (weight.sum(axis=1, keepdims=True) + prior)
                picks[outer] = estimate.argmax(axis=1)
            out["knn"][f"k={neighbours} prior={prior:g}"] = _picked(scores, picks)
    for clusters in (2, 4, 8, 16):
        picks = np.zeros(len(scores), dtype=np.int64)
        for k in range(FOLDS):
            inner, outer = fold != k, fold == k
            fitted = clusters_fit(vectors[inner], scores[inner], clusters, 0)
            picks[outer] = fitted.incumbents(vectors[outer])
        out["clusters"][clusters] = _picked(scores, picks)
    for c in (0.1, 1.0, 10.0):
        probability = np.zeros_like(scores)
        for k in range(FOLDS):
            inner, outer = fold != k, fold == k
            for j in range(scores.shape[1]):
                target = scores[inner, j].astype(int)
                if len(np.unique(target)) < 2:
                    probability[outer, j] = target.mean()
                    continue
                probe = LogisticRegression(C=c, max_iter=500).fit(vectors[inner], target)
                probability[outer, j] = probe.predict_proba(vectors[outer])[:, 1]
        out["linear_probe"][c] = _picked(scores, probability.argmax(axis=1))
    return out


def featurizer_compare(train: TrainingData, test: TrainingData) -> dict[str, Any]:
    """The full router with each featurizer: nested out-of-fold tradeoff 0 on the train rows,
    then the test files' tradeoff 0 (the report's held-out curve)."""
    out: dict[str, Any] = {}
    for embeddings in (EMBEDDINGS_OFF, EMBEDDINGS_WORDLLAMA):
        started = time.process_time()
        fit = router_fit(train, TrainerConfig(featurizer=FeaturizerConfig(embeddings=embeddings)))
        cpu = time.process_time() - started
        assert fit.nested is not None
        report = report_build(
            router=fit.router,
            predicted=fit.router.predict_many(test.prompts),
            prompts=test.prompts,
            scores=test.scores,
            costs=test.costs,
            evaluation={"method": "holdout"},
            tasks=test.tasks,
        )
        out[embeddings] = {
            "oof_nested_tradeoff_0": _picked(train.scores, fit.nested.picks[0]),
            "test_tradeoff_0": report["curve"][0]["score"],
            "training_cpu_seconds": round(cpu, 1),
        }
        print(embeddings, out[embeddings], flush=True)
    return out


def decision_cpu(datasets: Path) -> dict[str, Any]:
    """CPU time of one decision (as ``Predictor.rank``) over the 11 models, per prompt size."""
    models = _quality_models(datasets, QUALITY_TASKS, None)
    parts = [pd.read_csv(datasets / f"routerbench_{t}_train.csv") for t in QUALITY_TASKS]
    frame = pd.concat(parts).drop_duplicates("prompt").sample(300, random_state=0)
    prompts = frame["prompt"].astype(str).tolist()
    data = TrainingData(
        prompts,
        models,
        frame[models].fillna(0).to_numpy(float),
        frame[[f"{m}|total_cost" for m in models]].to_numpy(float),
        [True] * len(models),
    )
    every = list(range(len(models)))
    out: dict[str, Any] = {}
    for embeddings in (EMBEDDINGS_OFF, EMBEDDINGS_WORDLLAMA):
        config = TrainerConfig(folds=2, featurizer=FeaturizerConfig(embeddings=embeddings))
        router = router_fit(data, config).router
        for size in (200, 2048, 4096):
            samples = [_prompt_of_size(prompts, size, random.Random(size)) for _ in range(50)]
            timings = []
            for i in range(310):
                prompt = samples[i % len(samples)]
                started = time.thread_time_ns()
                predicted, incumbent = router.predict_one_with_incumbent(prompt, every)
                router.utilities(predicted, 0.5, mix_key(prompt), every, incumbent)
                if i >= 10:  # the first ones warm the caches
                    timings.append((time.thread_time_ns() - started) / 1e6)
            out[f"{embeddings} {size} B"] = round(float(np.median(timings)), 3)
            print(embeddings, size, out[f"{embeddings} {size} B"], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--models", choices=["7", "all"], default="7")
    parser.add_argument("--latency", action="store_true")
    args = parser.parse_args()
    if args.latency:
        print(json.dumps({"decision_cpu_p50_ms": decision_cpu(args.datasets)}, indent=1))
        return
    models = _quality_models(args.datasets, QUALITY_TASKS, 7 if args.models == "7" else None)
    train = quality_data(args.datasets, models, "train")
    test = quality_data(args.datasets, models, "test")
    fold = _fold_ids(len(train.prompts), FOLDS, 0)
    result: dict[str, Any] = {
        "oof_task_floor": round(task_floor_oof(train, fold), 4),
        "oof_embedding_alternatives": embedding_alternatives(train, fold),
    }
    print(json.dumps(result), flush=True)
    result["router"] = featurizer_compare(train, test)
    tasks = np.array(train.tasks)
    best = {t: int(np.argmax(train.scores[tasks == t].mean(axis=0))) for t in np.unique(tasks)}
    test_best = [best[t] for t in test.tasks or []]
    result["test_task_floor"] = _picked(test.scores, np.array(test_best))
    result["test_best_single"] = round(float(test.scores.mean(axis=0).max()), 4)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
