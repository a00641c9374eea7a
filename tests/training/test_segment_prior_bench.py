"""``bench.router_segment_prior`` (the segment prior blend experiment, issue 20) measures the soft
segment means the learner serves: their argmax is the soft incumbent of ``segments.py``, and the
subtask family's ids and parents are the trainer's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from bench.router_segment_prior import family_ids, soft_means
from tests.training.test_soft_incumbent import _data
from training.learner.featurizer import FeaturizerConfig, featurizer_fit
from training.learner.segments import segments_fit


def test_soft_means_argmax_is_the_served_soft_incumbent() -> None:
    data = _data(0)
    assert data.tasks is not None
    _, tfidf, dense = featurizer_fit(data.prompts, FeaturizerConfig())
    task, count, parent_of = family_ids(data.tasks)
    assert count == 2 and parent_of is None
    fold_of = np.arange(len(task)) % 3
    fitted = segments_fit(tfidf, dense, data.scores, task, count, fold_of, 0)
    for temperature in (0.5, 2.0):
        means, logits = soft_means(fitted, tfidf, dense, temperature)
        served = replace(fitted, temperature=np.array([temperature]))
        assert means.shape == data.scores.shape
        assert logits.shape == (len(task), count)
        np.testing.assert_array_equal(means.argmax(axis=1), served.incumbents_many(tfidf, dense))
    # A cold posterior reads the argmax task alone: each row's means are one segment's of it.
    sharp, logits = soft_means(fitted, tfidf, dense, 1e-6)
    segment_means, owner = np.asarray(fitted.means), np.asarray(fitted.owner)
    match = np.isclose(sharp[:, None, :], segment_means[None]).all(axis=2)
    of_argmax_task = owner[None] == logits.argmax(axis=1)[:, None]
    assert (match & of_argmax_task).any(axis=1).all()


def test_family_ids_split_subtasks_under_their_parent() -> None:
    labels = ["mmlu/a", "mmlu/b", "mmlu/a", "arc", "mmlu/c", "arc"]
    leaf, count, parent_of = family_ids(labels)
    assert count == 4 and parent_of is not None
    assert len(set(leaf.tolist())) == 4
    parents = {labels[i]: int(parent_of[leaf[i]]) for i in range(len(labels))}
    assert parents["mmlu/a"] == parents["mmlu/b"] == parents["mmlu/c"] != parents["arc"]
