"""Nested cross-validation: a fold's decisions come from choices made without its labels."""

from __future__ import annotations

import numpy as np
import pytest

from training.learner.clusters import ClusterChoice
from training.learner.nested import nested_evaluation
from training.learner.router import TrainedRouter, mix_keys
from training.learner.trainer import TrainerConfig, TrainingData, _fold_ids, router_fit

CONFIG = TrainerConfig(folds=3, threads=1, boost_rounds=20)
ROWS, MODELS = 240, 3
PRICES = [1.0, 2.0, 4.0]


@pytest.fixture(scope="module")
def router() -> TrainedRouter:
    """A small trained router: nested_evaluation takes its decision rule and costs."""
    rng = np.random.default_rng(0)
    scores = (rng.random((ROWS, MODELS)) < [0.4, 0.6, 0.7]).astype(float)
    data = TrainingData(
        prompts=[
            f"question {i} about {rng.choice(['rivers', 'sums', 'loops'])}" for i in range(ROWS)
        ],
        models=[f"model-{j}" for j in range(MODELS)],
        scores=scores,
        costs=np.tile(PRICES, (ROWS, 1)),
        binary=[True] * MODELS,
    )
    return router_fit(data, CONFIG).router


def _evaluate(
    router: TrainedRouter, parts: np.ndarray, scores: np.ndarray, choice: ClusterChoice | None
) -> np.ndarray:
    keys = mix_keys([f"prompt {i}" for i in range(ROWS)])
    fold_of = _fold_ids(ROWS, 3, 0)
    nested = nested_evaluation(
        router, parts, scores, np.tile(PRICES, (ROWS, 1)), True, keys, fold_of, choice
    )
    assert nested.picks.shape == (len(router.tradeoffs), ROWS)
    return nested.picks


@pytest.mark.parametrize("with_clusters", [False, True])
def test_a_folds_decisions_do_not_change_when_its_own_labels_do(
    router: TrainedRouter, with_clusters: bool
) -> None:
    rng = np.random.default_rng(2)
    scores = (rng.random((ROWS, MODELS)) < [0.4, 0.6, 0.7]).astype(float)
    fold_of = _fold_ids(ROWS, 3, 0)
    choice = None
    if with_clusters:
        halves = (np.arange(ROWS) % 2).astype(np.int64)
        choice = ClusterChoice(2, halves, {}, {1: np.full(ROWS, 2), 2: halves})
    # Out-of-fold predictions that carry signal: the labels plus noise, as two head parts.
    parts = np.stack([scores + rng.normal(0, 0.6, scores.shape)] * 2, axis=2)
    flipped = scores.copy()
    flipped[fold_of == 0] = 1.0 - flipped[fold_of == 0]  # fold 0's labels turned upside down

    before = _evaluate(router, parts, scores, choice)
    after = _evaluate(router, parts, flipped, choice)

    np.testing.assert_array_equal(before[:, fold_of == 0], after[:, fold_of == 0])
    # The other folds' policies were chosen on fold 0's rows among others, so they move.
    assert not np.array_equal(before[:, fold_of != 0], after[:, fold_of != 0])


def test_the_number_of_clusters_is_chosen_on_the_given_rows_only() -> None:
    rows = 100
    scores = np.zeros((rows, 2))
    scores[:50, 0] = 1.0  # model-0 is right on the first half, model-1 on the second
    scores[50:, 1] = 1.0
    overall = np.zeros(rows, dtype=np.int64)
    by_half = np.repeat([0, 1], 50).astype(np.int64)
    choice = ClusterChoice(2, by_half, {}, {1: overall, 2: by_half})

    assert choice.chosen_on(scores, np.arange(rows))[0] == 2
    assert choice.chosen_on(scores, np.arange(50))[0] == 1  # on these rows one cluster is as good
    k, incumbents = choice.chosen_on(scores, np.arange(50, rows))
    assert k == 2 and incumbents is by_half
