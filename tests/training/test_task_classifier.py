"""The task classifier of task segments: either kind serves as a linear rule on the TF-IDF
vector, the more accurate kind out of fold is chosen, and the temperature makes its posterior
calibrated."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from training.learner import task_classifier
from training.learner.task_classifier import (
    KIND_LR,
    KIND_NB,
    NEVER,
    classifier_fit,
    classifier_kinds,
    kind_choose,
    posterior,
    temperature_fit,
)


def _rows(tasks: int, rows: int, seed: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Unit-norm term vectors: each task leans on its own 5 of 40 terms."""
    rng = np.random.default_rng(seed)
    task = rng.integers(0, tasks, size=rows)
    counts = rng.poisson(0.3, size=(rows, 40)).astype(float)
    for t in range(tasks):
        counts[task == t, 5 * t : 5 * t + 5] += rng.poisson(1.0, size=((task == t).sum(), 5))
    counts /= np.maximum(np.linalg.norm(counts, axis=1, keepdims=True), 1e-12)
    return sparse.csr_matrix(counts), task


@pytest.mark.parametrize("tasks", [2, 4])
def test_the_logistic_kind_serves_as_the_argmax_of_its_linear_rule(tasks: int) -> None:
    from sklearn.linear_model import LogisticRegression

    x, task = _rows(tasks, 400, seed=tasks)
    expected = (
        LogisticRegression(C=task_classifier.LR_C, max_iter=task_classifier.LR_MAX_ITER)
        .fit(x, task)
        .predict(x)
    )

    term, bias = classifier_fit(x, task, tasks + 1, KIND_LR)  # one more task, never seen

    logits = np.asarray(x @ term) + bias
    assert term.dtype == np.float32 and bias[tasks] == NEVER
    assert (logits.argmax(axis=1) == expected).mean() > 0.99  # float32 weights: near-ties
    assert posterior(logits, 1.0)[:, tasks].max() == 0.0


def test_the_kind_that_names_more_rows_right_is_chosen_and_naive_bayes_on_ties() -> None:
    task = np.array([0, 1, 1, 0])
    right = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    wrong_once = right.copy()
    wrong_once[0] = [0.0, 2.0]

    assert kind_choose({KIND_NB: wrong_once, KIND_LR: right}, task) == KIND_LR
    assert kind_choose({KIND_NB: right, KIND_LR: right.copy()}, task) == KIND_NB


def test_the_logistic_kind_is_tried_only_within_its_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, _ = _rows(3, 100, seed=0)
    monkeypatch.setattr(task_classifier, "LR_MAX_WORK", x.nnz * 3)

    assert classifier_kinds(x, 3) == (KIND_NB, KIND_LR)
    assert classifier_kinds(x, 4) == (KIND_NB,)


@pytest.mark.parametrize("truth", [0.5, 3.0])
def test_the_fitted_temperature_recovers_the_one_the_tasks_were_drawn_with(truth: float) -> None:
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=2.0, size=(6000, 4))
    chances = posterior(logits, truth)
    task = np.array([rng.choice(4, p=p) for p in chances])

    fitted = temperature_fit(logits, task)

    assert fitted == pytest.approx(truth, rel=0.15)
