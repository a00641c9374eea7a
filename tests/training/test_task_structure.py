"""Quality-only data from five task kinds, the task never named: the router finds the structure.

The independent evaluation's shape: MMLU-like, GSM8K-like math, CMMLU-like Chinese, ARC-like and
HumanEval-like code prompts, 7 models at one price, a different best model for every task and
no model best overall by much. Prompts are generated in each benchmark's layout (ARC's five-shot
prefix and instruction, MMLU's subject header, Chinese script, word problems with numbers, Python
stubs with doctests), so ARC-like and MMLU-like share multiple-choice vocabulary. At tradeoff 0
the router, trained without the task column, must reach the per-task best model's score on
held-out rows (chosen on the training rows) less a small margin, and beat the best single model.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.training.task_prompts import TASKS, binary_data, holdout_report, task_prompt
from training.learner.trainer import TrainerConfig, TrainingData, router_fit

CONFIG = TrainerConfig(folds=3, threads=1, boost_rounds=40)
# Per task, each model's chance of a right answer: task k's best model is model-k (0.85), the
# others 0.55-0.70, so every model's overall mean is within 0.1 of the others'.
ACCURACY = np.array(
    [
        [0.85, 0.60, 0.65, 0.55, 0.60, 0.70, 0.65],
        [0.60, 0.85, 0.55, 0.65, 0.70, 0.60, 0.65],
        [0.65, 0.55, 0.85, 0.60, 0.65, 0.70, 0.60],
        [0.70, 0.65, 0.60, 0.85, 0.55, 0.65, 0.60],
        [0.55, 0.70, 0.65, 0.60, 0.85, 0.60, 0.70],
    ]
)


def _data(rows_per_task: int, seed: int) -> tuple[TrainingData, np.ndarray]:
    rng = np.random.default_rng(seed)
    kinds = np.repeat(np.arange(len(TASKS)), rows_per_task)
    prompts = [task_prompt(TASKS[k], rng) for k in kinds]
    scores = (rng.random((len(kinds), ACCURACY.shape[1])) < ACCURACY[kinds]).astype(float)
    data = binary_data(prompts, scores)
    return data, kinds


@pytest.fixture(scope="module")
def held_out() -> tuple[dict, TrainingData, np.ndarray, TrainingData, np.ndarray]:
    train, train_kinds = _data(90, seed=0)
    test, test_kinds = _data(120, seed=1)
    report = holdout_report(router_fit(train, CONFIG).router, test)
    return report, train, train_kinds, test, test_kinds


def test_tradeoff_zero_reaches_the_per_task_floor_without_the_task_column(
    held_out: tuple[dict, TrainingData, np.ndarray, TrainingData, np.ndarray],
) -> None:
    report, train, train_kinds, test, test_kinds = held_out
    # the per-task best model, chosen on the training rows, scored on the held-out rows
    best = [int(np.argmax(train.scores[train_kinds == k].mean(axis=0))) for k in range(5)]
    floor = float(test.scores[np.arange(len(test_kinds)), np.array(best)[test_kinds]].mean())
    best_single = float(test.scores.mean(axis=0).max())
    assert floor > best_single + 0.1  # the data has task structure worth finding

    assert report["curve"][0]["score"] >= floor - 0.01
    assert report["curve"][0]["score"] > best_single + 0.08


def test_the_verdict_on_quality_only_data_is_about_tradeoff_zero_not_a_price_curve(
    held_out: tuple[dict, TrainingData, np.ndarray, TrainingData, np.ndarray],
) -> None:
    # Equal prices: AIQ against the zero router measures nothing, the best single model is the
    # zero router's point, and the router beats it (the test above).
    verdict = held_out[0]["verdict"]
    assert verdict.startswith("This data has no prices")
    assert "No gain from routing" not in verdict
    assert verdict.endswith("At tradeoff 0 it beats the best single model (95% interval above 0).")
