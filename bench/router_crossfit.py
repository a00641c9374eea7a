"""Tradeoff-0 summaries for the quality-only benchmarks (``bench/router.py``), one held-out half
or cross-fitted over both.

A held-out evaluation scores half the rows: the other half only trains. Cross-fitting (issue 20)
trains once on half A and tests on B, once on B and tests on A, through the same service path,
so every row is scored by a router (and a per-task floor, and a hint table) that never saw it,
and the paired comparison has twice the rows. Nothing is chosen on the rows a fit is scored on:
each fit's choices (the router's, the hint's ``w``, each task's best model) come from its own
training half. The per-row differences of the two fits are pooled and bootstrapped together.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Per-row arrays a fit yields (``bench.router.quality_fit``): the models' scores (rows, models),
# the score at tradeoff 0 without and with each row's task as the hint, and the per-task floor's.
ROW_KEYS = ("scores", "routed", "hinted", "floor")


def swapped(frames: dict[str, Any]) -> dict[str, Any]:
    """The other direction of a two-way split: train on the test half, test on the train half."""
    return {"train": frames["test"], "test": frames["train"]}


def pooled(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The fits' per-row arrays stacked (each row once: the halves are disjoint)."""
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
