"""The served policy table on adversarial data: the zero router is a floor, ties go cheaper."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from training.learner import metrics
from training.learner.calibration import TRADEOFF_GRID
from training.learner.report import report_build
from training.learner.router import mix_keys
from training.learner.trainer import FitResult, TrainerConfig, TrainingData, router_fit

CONFIG = TrainerConfig(folds=3, threads=1, boost_rounds=40)
WORDS = ["river", "forest", "lantern", "harbour", "meadow", "violin", "garden", "comet", "sum"]


def _prompts(rows: int, rng: np.random.Generator) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=6)) + f" {i}" for i in range(rows)]


def _data(scores: np.ndarray, prices: list[float], seed: int = 0) -> TrainingData:
    rows, models = scores.shape
    return TrainingData(
        prompts=_prompts(rows, np.random.default_rng(seed)),
        models=[f"model-{j}" for j in range(models)],
        scores=scores.astype(float),
        costs=np.tile(np.asarray(prices, dtype=float), (rows, 1)),
        binary=[True] * models,
    )


def _oof_report(data: TrainingData) -> tuple[FitResult, dict[str, Any]]:
    fit = router_fit(data, CONFIG)
    report = report_build(
        router=fit.router,
        predicted=fit.oof_predicted,
        prompts=data.prompts,
        scores=data.scores,
        costs=data.costs,
        evaluation={},
        incumbents=fit.oof_incumbents,
    )
    return fit, report


def test_on_pure_noise_the_curve_is_the_zero_routers_hull_with_intermediate_points() -> None:
    rng = np.random.default_rng(11)
    rows = 600
    means = [0.2, 0.45, 0.6, 0.8]  # clearly different models, prompts carry no information
    scores = np.column_stack([rng.random(rows) < p for p in means])
    data = _data(scores, [1.0, 2.0, 4.0, 8.0])

    _, report = _oof_report(data)

    singles = [(m["mean_cost"], m["mean_score"]) for m in report["models"]]
    hull = metrics.nondecreasing_hull(singles)
    assert report["aiq"] >= report["aiq_zero_router"] - 1e-9
    points = [(p["cost"], p["score"]) for p in report["curve"]]
    for cost, score in points:
        on_hull = float(np.interp(cost, hull[:, 0], hull[:, 1]))
        # Within the noise of 600 rows: never claims a real gain, never falls below.
        assert abs(score - on_hull) <= 0.03, (cost, score, on_hull)
    assert len(set(points)) >= 8
    assert points[0] == pytest.approx(singles[3])  # best quality: the best model, clearly
    assert points[-1] == pytest.approx(singles[0])


def test_a_dominating_model_that_is_also_cheapest_is_chosen_at_every_tradeoff() -> None:
    rng = np.random.default_rng(5)
    rows = 300
    scores = np.column_stack(
        [rng.random(rows) < 0.3, np.ones(rows), rng.random(rows) < 0.6]
    )  # model-1 answers everything
    data = _data(scores, [2.0, 1.0, 10.0])

    fit, report = _oof_report(data)

    for tradeoff in TRADEOFF_GRID:
        keys = mix_keys(data.prompts)
        picks = fit.router.choose_many(fit.oof_predicted, float(tradeoff), keys, fit.oof_incumbents)
        assert set(picks.tolist()) == {1}, tradeoff
    assert {tuple(p["share"]) for p in report["curve"]} == {("model-1",)}


def test_tradeoff_zero_does_not_pay_for_a_statistically_tied_dearer_model() -> None:
    rng = np.random.default_rng(3)
    rows = 300
    # Both answer about 70% of prompts (the dearer one a little more on these rows): a tie.
    cheap = rng.random(rows) < 0.70
    dear = rng.random(rows) < 0.72
    data = _data(np.column_stack([cheap, dear]), [1.0, 28.0])
    assert data.scores[:, 1].mean() > data.scores[:, 0].mean()

    _, report = _oof_report(data)

    assert report["curve"][0]["share"] == {"model-0": 1.0}
    assert report["curve"][0]["cost"] == pytest.approx(1.0)


def test_without_known_costs_tradeoff_zero_keeps_the_best_model() -> None:
    rng = np.random.default_rng(2)
    rows = 300
    cheap = rng.random(rows) < 0.70
    dear = cheap.copy()
    dear[rng.choice(rows, size=12, replace=False)] = True
    data = _data(np.column_stack([cheap, dear]), [1.0, 2.0])
    data.costs_known = False  # rank-based stand-in costs: "cheaper" means nothing

    _, report = _oof_report(data)

    # The best quality, not the cheap model's (a policy as good but cheaper is fine).
    assert report["curve"][0]["score"] == pytest.approx(report["best_single"]["score"])
    assert report["curve"][0]["share"].get("model-1", 0) > 0.5
