"""A feedback prompt the dataset does not hold gets its task as the active version reads it
(``training/feedback_tasks.py``): the served task classifier's argmax, named as the learner
numbered the tasks, at the level the version serves."""

from __future__ import annotations

import numpy as np
import pytest

from tests.training import test_subtask_labels, test_task_segments
from training.feedback_tasks import feedback_task_levels
from training.learner.segments import MAX_TASKS, task_ids
from training.learner.task_labels import subtasks_capped, task_levels
from training.learner.trainer import FitResult, TrainingData, router_fit


def _served_reading(fit: FitResult, prompts: list[str], names: list[str]) -> list[str]:
    segments = fit.router.segments
    assert segments is not None and segments.term_weights is not None
    logits = fit.router.featurizer.tfidf_matrix(prompts) @ segments.term_weights
    return [names[g] for g in np.argmax(np.asarray(logits) + segments.bias, axis=1)]


def _levels(data: TrainingData) -> tuple[list[str], list[str]]:
    assert data.tasks is not None
    parents, labels = task_levels(data.tasks, data.task_parents)
    return labels, parents


def _generated(labels: str, seed: int) -> TrainingData:
    """Subjects told apart by rare words (subtasks win), or two tasks in one format (tasks)."""
    if labels == "subtasks":
        return test_subtask_labels._data(seed)
    return test_task_segments._data(seed, subjects_differ=False)


@pytest.mark.parametrize("labels", ["subtasks", "tasks"])
def test_a_new_prompt_takes_the_task_the_served_classifier_reads(labels: str) -> None:
    train, held = _generated(labels, 0), _generated(labels, 1)
    fit = router_fit(train, test_subtask_labels.CONFIG)
    family = fit.families.k if fit.families is not None else None
    assert family == labels  # the version serves the task family of its labels' level
    base = _levels(train)

    found, parents = feedback_task_levels(fit.router, family, base, train.prompts, held.prompts)

    keys = base[0] if labels == "tasks" else subtasks_capped(base[0], MAX_TASKS, base[1])
    assert found == _served_reading(fit, held.prompts, task_ids(keys)[1])
    truth, _ = _levels(held)
    assert np.mean(np.array(found) == np.array(truth)) > 0.9
    assert parents == [label.split("/")[0] for label in found]
