"""A task hint decides only where it was chosen: at tradeoff 0's policy row. Elsewhere a request
naming its task decides as without it (never a dearer model than without), serving says so, and
the report's hinted curve is the unhinted one there.

The data: five quiz subtasks whose prompts do not tell them apart, each with its own best model,
the models priced 1, 2, 4, 8 and 30 (the reviewer's fixture of issue 20's review).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.training.task_prompts import WORDS
from training.learner.calibration import TRADEOFF_GRID
from training.learner.router import mix_keys
from training.learner.task_hint_report import task_hints_report
from training.learner.trainer import FitResult, TrainerConfig, TrainingData, router_fit
from training.predictor import HINT_NOT_AT_TRADEOFF, Predictor

CONFIG = TrainerConfig(folds=3, threads=1, boost_rounds=40)
COST = np.array([1.0, 2.0, 4.0, 8.0, 30.0])
BEST = {"quiz/a": 0, "quiz/b": 1, "quiz/c": 3, "quiz/d": 4, "quiz/e": 2}


def _data(seed: int, rows: int = 150) -> TrainingData:
    rng = np.random.default_rng(seed)
    prompts, tasks, chance = [], [], []
    for task, best in BEST.items():
        for _ in range(rows):
            prompts.append("Quiz question: " + " ".join(rng.choice(WORDS, size=12)) + "?")
            tasks.append(task)
            row = np.array([0.35, 0.45, 0.5, 0.55, 0.6])
            row[best] = 0.9
            chance.append(row)
    scores = (rng.random(np.shape(chance)) < np.array(chance)).astype(float)
    costs = np.tile(COST, (len(prompts), 1)) * rng.uniform(0.9, 1.1, (len(prompts), 1))
    return TrainingData(
        prompts=prompts,
        models=[f"m{j}" for j in range(5)],
        scores=scores,
        costs=costs,
        binary=[True] * 5,
        costs_known=True,
        tasks=tasks,
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[FitResult, TrainingData]:
    fit = router_fit(_data(0), CONFIG)
    assert fit.router.task_hint is not None, "each subtask's best is hidden from the prompt"
    return fit, _data(1000)


def test_a_task_never_makes_a_dearer_choice_than_without_it_away_from_tradeoff_zero(
    fitted: tuple[FitResult, TrainingData],
) -> None:
    fit, test = fitted
    predictor = Predictor(0, "", fit.router)
    hint = fit.router.task_hint
    assert hint is not None and test.tasks is not None
    index = {m: j for j, m in enumerate(fit.router.models)}
    for tradeoff in (0.5, 1.0):
        for prompt, task in list(zip(test.prompts, test.tasks, strict=True))[::15]:
            plain = predictor.rank(prompt, tradeoff)
            hinted = predictor.rank(prompt, tradeoff, None, None, None, hint.row_of(task))
            assert COST[index[hinted[0].model]] <= COST[index[plain[0].model]], (tradeoff, task)
            assert hinted == plain, (tradeoff, task)
            assert predictor.task_row(task, tradeoff) == (None, None, HINT_NOT_AT_TRADEOFF)
    # at tradeoff 0 the hint decides (the row and label it serves)
    assert predictor.task_row("quiz/d", 0.0)[1] == "quiz/d"


def test_the_reported_hinted_curve_is_the_unhinted_one_where_the_hint_does_not_apply(
    fitted: tuple[FitResult, TrainingData],
) -> None:
    fit, test = fitted
    router = fit.router
    assert test.tasks is not None
    predicted = router.predict_many(test.prompts)
    found = task_hints_report(
        router,
        predicted,
        (test.prompts, test.scores, test.costs, test.tasks, None),
        (_data(0).scores, _data(0).tasks, None),
        float,
    )
    keys, incumbents = mix_keys(test.prompts), router.cluster_incumbents(test.prompts)
    rows = np.arange(len(test.prompts))
    assert len(found["curve_with_hints"]) == len(TRADEOFF_GRID)
    for point in found["curve_with_hints"]:
        picks = router.choose_many(predicted, point["tradeoff"], keys, incumbents)
        plain = float(test.scores[rows, picks].mean())
        if router.hint_applies(point["tradeoff"]):
            assert point["score"] >= plain - 1e-6
        else:
            assert point["score"] == pytest.approx(plain, abs=1e-6)
            assert point["cost"] == pytest.approx(float(test.costs[rows, picks].mean()))
