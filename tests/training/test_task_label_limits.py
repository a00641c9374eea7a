"""Task labels and their hint table: one length limit from ingest to serving, and a parent's
fallback row built from all of its rows (training/task_columns.py, training/learner/task_hint.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.training.router_files import reloaded
from tests.training.test_task_hint_tradeoff import CONFIG, _data
from training.learner import artifacts
from training.learner.task_hint import MAX_TASK_CHARS, task_hint_fit
from training.learner.trainer import router_fit
from training.task_columns import row_tasks


def test_the_longest_label_ingest_makes_trains_a_hint_that_reloads() -> None:
    data = _data(0)
    assert data.tasks is not None
    frame = pd.DataFrame(
        {
            "task": ["P" * 500] * len(data.tasks),
            "subtask": [t.removeprefix("quiz/") + "s" * 500 for t in data.tasks],
        }
    )
    labels, parents = row_tasks(frame, "task", "subtask")
    assert max(map(len, labels)) == MAX_TASK_CHARS
    assert len(set(labels)) == len(set(data.tasks))  # the subtasks stay apart
    data.tasks, data.task_parents = labels, parents
    fit = router_fit(data, CONFIG)
    assert fit.router.task_hint is not None

    router = reloaded(artifacts.router_to_files(fit.router))

    assert router.task_hint is not None and router.task_hint.tasks == fit.router.task_hint.tasks


def test_a_parent_that_is_also_a_label_falls_back_to_the_mean_of_all_its_rows() -> None:
    rng = np.random.default_rng(0)
    labels = ["T"] * 100 + ["T/x"] * 250 + ["T/y"] * 250
    best = np.array([0] * 100 + [1] * 500)
    chance = np.where(np.arange(2) == best[:, None], 0.9, 0.2)
    scores = (rng.random((600, 2)) < chance).astype(float)
    predicted = np.full((600, 2), 0.5) + rng.normal(0, 0.01, (600, 2))

    def argmax(p: np.ndarray) -> np.ndarray:
        return np.argmax(p, axis=1)

    hint = task_hint_fit(
        labels, ["T"] * 600, scores, predicted, rng.integers(0, 5, 600), (argmax, argmax)
    )

    assert hint is not None
    fallback = hint.row_of("T/unknown")
    assert fallback is not None and hint.tasks[fallback] == "T"
    k = hint.pseudo_rows
    overall = scores.mean(axis=0)
    expected = (scores.sum(axis=0) + k * overall) / (600 + k)
    np.testing.assert_allclose(hint.means[fallback], expected)
