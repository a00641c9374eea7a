"""The cross-fitted quality-only evaluation (bench/router_crossfit.py, issue 20): the k fits'
test folds are disjoint, stratified within each task and together the whole data, so each row is
scored exactly once by a fit that never trained on it, and pooling them is what gives the paired
interval its power. Generated frames and per-row results, no dataset, no training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.router_crossfit import fold_frames, fold_ids, pooled, quality_summary
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


def _frame(sizes: tuple[int, ...]) -> pd.DataFrame:
    tasks = [f"mmlu/s{t}" for t, size in enumerate(sizes) for _ in range(size)]
    return pd.DataFrame(
        {"prompt": [f"q{i}" for i in range(len(tasks))], "task": tasks, "weak": 1.0, "strong": 0.0}
    )


def test_k_folds_score_every_row_once_in_disjoint_folds_stratified_within_each_task() -> None:
    frame = _frame((23, 17, 40, 4))
    ids = fold_ids(frame["task"].to_numpy(), 5, seed=3)
    fits = [fold_frames(frame, ids, fold) for fold in range(5)]

    tested = [prompt for fit in fits for prompt in fit["test"]["prompt"]]
    assert sorted(tested) == sorted(frame["prompt"])  # every row scored exactly once
    for fit in fits:  # each fit trains on every row but the ones it is scored on
        assert set(fit["train"]["prompt"]).isdisjoint(fit["test"]["prompt"])
        assert len(fit["train"]) + len(fit["test"]) == len(frame)
    counts = pd.crosstab(frame["task"], ids)  # per task, the folds' sizes differ by at most 1
    assert list(counts.columns) == [0, 1, 2, 3, 4]
    assert ((counts.max(axis=1) - counts.min(axis=1)) <= 1).all()
    assert counts.loc["mmlu/s3"].tolist() == [0, 1, 1, 1, 1]  # the smaller parts first
    assert not np.array_equal(ids, fold_ids(frame["task"].to_numpy(), 5, seed=4))
    assert np.array_equal(ids, fold_ids(frame["task"].to_numpy(), 5, seed=3))


def test_two_folds_are_the_halves_and_the_second_fit_tests_on_what_the_first_trained_on() -> None:
    frame = _frame((14, 13, 13))
    ids = fold_ids(frame["task"].to_numpy(), 2, seed=0)
    first, second = (fold_frames(frame, ids, fold) for fold in (0, 1))

    assert first["test"].equals(split_by_task(frame, seed=0)["test"])
    assert list(second["train"]["prompt"]) == list(first["test"]["prompt"])
    assert list(second["test"]["prompt"]) == list(first["train"]["prompt"])
    assert len(first["test"]) == 7 + 6 + 6  # each task's half rounded down


def test_fewer_than_two_folds_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 folds"):
        fold_ids(np.array(["mmlu/a"] * 4), 1, seed=0)


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
