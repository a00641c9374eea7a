"""The cross-fitted quality-only evaluation (bench/router_crossfit.py, issue 20): the two fits'
test halves are the two halves of the data, each row is scored once, and pooling them is what
gives the paired interval its power. Generated per-row results, no dataset, no training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.router_crossfit import pooled, quality_summary, swapped
from bench.router_mmlu import split_by_task

MODELS = ["weak", "strong"]


def _half(rows: int, better: int, worse: int, seed: int) -> dict[str, np.ndarray]:
    """Per-row results where the hinted router beats the floor on ``better`` rows and loses on
    ``worse`` (the rest tie), the strong model right on 80% of the rows and the weak on 70%."""
    rng = np.random.default_rng(seed)
    scores = np.column_stack([rng.random(rows) < 0.7, rng.random(rows) < 0.8]).astype(float)
    floor = scores[:, 1].copy()
    hinted = floor.copy()
    order = rng.permutation(rows)
    hinted[order[:better]] = 1.0
    floor[order[:better]] = 0.0
    hinted[order[better : better + worse]] = 0.0
    floor[order[better : better + worse]] = 1.0
    return {"scores": scores, "routed": scores[:, 1].copy(), "hinted": hinted, "floor": floor}


def test_the_swapped_fit_tests_on_the_rows_the_first_trained_on() -> None:
    frame = pd.DataFrame(
        {
            "prompt": [f"q{i}" for i in range(40)],
            "task": [f"mmlu/s{i % 3}" for i in range(40)],
            "weak": 1.0,
            "strong": 0.0,
        }
    )
    first = split_by_task(frame)
    second = swapped(first)

    tested = [*first["test"]["prompt"], *second["test"]["prompt"]]
    assert sorted(tested) == sorted(frame["prompt"])  # every row scored once
    assert set(second["train"]["prompt"]).isdisjoint(second["test"]["prompt"])
    assert list(second["train"]["prompt"]) == list(first["test"]["prompt"])


def test_pooling_both_halves_narrows_the_interval_each_half_leaves_across_zero() -> None:
    halves = [_half(1000, 25, 15, seed) for seed in (0, 1)]
    each = [quality_summary(half, MODELS) for half in halves]
    both = quality_summary(pooled(halves), MODELS)

    for summary in each:  # +0.01 per half, not significant on 1,000 rows
        low, high = summary["hinted_gain_over_per_task_floor_ci95"]
        assert low < 0 < high
        gain = summary["tradeoff_0_with_task_hints"] - summary["per_task_floor_score"]
        assert gain == pytest.approx(0.01)
    low, high = both["hinted_gain_over_per_task_floor_ci95"]
    assert 0 < low < 0.01 < high  # the same gain on 2,000 paired rows
    assert both["per_task_floor_score"] == round(
        float(np.concatenate([h["floor"] for h in halves]).mean()), 4
    )
    assert both["best_single"]["id"] == "strong"
