"""Tradeoff-0 summaries for the quality-only benchmarks (``bench/router.py``), one held-out split
or cross-fitted over k folds.

A held-out evaluation scores only its test rows: the rest only train. Cross-fitting (issue 20)
splits the rows into k folds stratified within each task (``fold_ids``) and runs k fits through
the same service path, fit i training on every fold but i and testing on fold i, so every row is
scored exactly once by a router (and a per-task floor, and a hint table) that never saw it.
Nothing is chosen on the rows a fit is scored on: each fit's choices (the router's, the hint's
``w``, each task's best model) come from its own training folds. The fits' per-row results are
pooled and bootstrapped together. k = 2 is the two halves (train on A, test on B, and back).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Per-row arrays a fit yields (``bench.router.quality_fit``): the models' scores (rows, models),
# the score at tradeoff 0 without and with each row's task as the hint, and the per-task floor's.
ROW_KEYS = ("scores", "routed", "hinted", "floor")


def fold_ids(tasks: Any, folds: int, seed: int) -> np.ndarray:
    """Each row's fold in ``range(folds)``, stratified by task: each task's rows (in ``np.unique``
    order) shuffled with numpy ``seed`` and cut into ``folds`` contiguous parts, the smaller parts
    first, so fold 0 of 2 is the first half rounded down (``split_by_task``'s test half)."""
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, not {folds}")
    rng = np.random.default_rng(seed)
    tasks = np.asarray(tasks)
    ids = np.empty(len(tasks), dtype=np.int64)
    for task in np.unique(tasks):
        rows = np.flatnonzero(tasks == task)
        rng.shuffle(rows)
        for fold, part in enumerate(reversed(np.array_split(rows[::-1], folds))):
            ids[part] = fold
    return ids


def fold_frames(frame: Any, ids: np.ndarray, fold: int) -> dict[str, Any]:
    """Fit ``fold``'s frames: train on every other fold, test on this one (rows in file order)."""
    test = ids == fold
    return {
        "train": frame[~test].reset_index(drop=True),
        "test": frame[test].reset_index(drop=True),
    }


def pooled(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The fits' per-row arrays stacked (each row once: the test folds are disjoint)."""
    return {key: np.concatenate([part[key] for part in parts]) for key in ROW_KEYS}


def quality_summary(rows: dict[str, np.ndarray], models: list[str]) -> dict[str, Any]:
    """Tradeoff 0 with and without task hints against the best single model (by its mean on
    these rows, the strictest single-model baseline) and the per-task floor, with paired 95%
    bootstrap intervals of the per-row differences (``metrics.bootstrap_interval``)."""
    from training.learner import metrics

    def interval(values: np.ndarray) -> list[float]:
        return [round(v, 4) for v in metrics.bootstrap_interval(values)]

    scores, routed, hinted, floor = (rows[key] for key in ROW_KEYS)
    best = int(np.argmax(scores.mean(axis=0)))
    return {
        "tradeoff_0_score": round(float(routed.mean()), 4),
        "tradeoff_0_ci95": interval(routed),
        "best_single": {"id": models[best], "score": round(float(scores[:, best].mean()), 4)},
        "per_task_floor_score": round(float(floor.mean()), 4),
        "gain_over_best_single_ci95": interval(routed - scores[:, best]),
        "gain_over_per_task_floor_ci95": interval(routed - floor),
        "tradeoff_0_with_task_hints": round(float(hinted.mean()), 4),
        "hinted_gain_over_best_single_ci95": interval(hinted - scores[:, best]),
        "hinted_gain_over_per_task_floor_ci95": interval(hinted - floor),
        "hinted_gain_over_unhinted_ci95": interval(hinted - routed),
    }
