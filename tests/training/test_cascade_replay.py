"""A cascade replayed on held-out rows (``training.learner.cascade``): which step serves each
row, and what the cascade scores and costs, checked against sums done by hand."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from training.learner.cascade import cascade_point, cascade_served, cascade_sweep

# Three rows, three models: predicted scores, actual scores and costs per request.
PREDICTED = np.array([[0.9, 0.2, 0.5], [0.4, 0.8, 0.5], [0.1, 0.3, 0.5]])
SCORES = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
COSTS = np.array([[1.0, 3.0, 10.0], [1.0, 3.0, 10.0], [1.0, 3.0, 10.0]])


def test_each_row_is_served_by_the_first_step_whose_gate_passes() -> None:
    served = cascade_served(PREDICTED, [0, 1, 2], [0.5, 0.5, None])
    assert served.tolist() == [0, 1, 2]


def test_a_step_without_a_gate_answers_every_row_that_reaches_it() -> None:
    assert cascade_served(PREDICTED, [0, 1, 2], [0.5, None, None]).tolist() == [0, 1, 1]
    # The last step's threshold is never read: it always answers.
    assert cascade_served(PREDICTED, [0, 2], [0.95, 0.99]).tolist() == [1, 1, 1]


def test_a_skipped_step_costs_nothing_and_the_served_answer_is_scored() -> None:
    point = cascade_point(PREDICTED, SCORES, COSTS, [0, 1, 2], [0.5, 0.5, None], None)

    assert point.score == pytest.approx((1.0 + 1.0 + 1.0) / 3)
    assert point.cost == pytest.approx((1.0 + 3.0 + 10.0) / 3)
    assert point.share == pytest.approx({0: 1 / 3, 1: 1 / 3, 2: 1 / 3})


def test_the_sweep_runs_from_the_cheap_model_everywhere_to_the_last_step_everywhere() -> None:
    sweep = cascade_sweep(PREDICTED, SCORES, COSTS, [0, 2])

    thresholds = [p.threshold for p in sweep]
    assert thresholds == sorted(thresholds)
    first, last = sweep[0], sweep[-1]
    assert (first.score, first.cost, first.share) == (pytest.approx(1 / 3), 1.0, {0: 1.0})
    assert (last.score, last.cost, last.share) == (1.0, 10.0, {1: 1.0})
    # Raising the threshold only ever moves rows to the dearer last step.
    assert all(a.cost <= b.cost for a, b in pairwise(sweep))
