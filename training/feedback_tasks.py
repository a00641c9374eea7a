"""The task (and subtask) of each feedback prompt that is not in the router's dataset.

A dataset rebuilt from feedback keeps its rows' tasks (``training.feedback``); a feedback prompt
the dataset holds takes its row's, and any other prompt is read as serving reads it: the active
version's task classifier (``segments.PromptSegments``: its TF-IDF rule's argmax) when the
version serves a task family, at the level it serves. Where it serves none (clusters won out of
fold, or only one task), or serves the parent tasks of data that has subtasks, the missing level
is read by the rule a task family would have been fitted with (``task_classifier``: naive Bayes,
two-stage for subtasks) on the rows the version was fitted on, through the version's featurizer.
A classifier group is named by the label most of its training rows carry, so a pooled group
(``(other tasks)``, ``parent/(other subtasks)``) still reads as one of the dataset's own labels.
A prompt whose request named its task (``router.task``, kept in the generation's trace) takes
that task instead where the dataset has it, or is read within the parent task it names.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy import sparse

from training.learner.router import TrainedRouter
from training.learner.sampling import sample_indices
from training.learner.segments import (
    MAX_TASKS,
    SUBTASKS_FAMILY,
    TASKS_FAMILY,
    TOP_CLASSIFIER,
    task_ids,
)
from training.learner.task_classifier import classifier_fit, nested_classifier_fit
from training.learner.task_labels import has_subtasks, parent_index, subtasks_capped
from training.learner.trainer import TrainerConfig

Levels = tuple[list[str], list[str]]  # (each row's label, its parent task)


def _fitted_rows(n: int) -> np.ndarray:
    """The rows the version's featurizer and segments were fitted on (``router_fit_sampled``)."""
    config = TrainerConfig()
    rows = sample_indices(n, config.sample_rows, config.seed)
    return np.arange(n) if rows is None else rows


def _group_levels(group: np.ndarray, groups: int, labels: list[str], parents: list[str]) -> Levels:
    """Each classifier group's (label, parent): the one most of its rows carry (first on ties)."""
    counts: list[Counter[tuple[str, str]]] = [Counter() for _ in range(groups)]
    for g, label, parent in zip(group.tolist(), labels, parents, strict=True):
        counts[g][(label, parent)] += 1
    named = [c.most_common(1)[0][0] if c else ("", "") for c in counts]
    return [label for label, _ in named], [parent for _, parent in named]


class _Grouping:
    """One level of the training rows' tasks as the learner numbers it (``task_ids``), with
    each group's (label, parent)."""

    def __init__(self, keys: list[str], labels: list[str], parents: list[str]) -> None:
        self.ids, self.names = task_ids(keys)
        self.labels, self.parents = _group_levels(self.ids, len(self.names), labels, parents)


def _leaf_grouping(labels: list[str], parents: list[str]) -> tuple[_Grouping, np.ndarray]:
    """The subtasks as the learner groups them and each one's parent index (``parent_of``)."""
    capped = subtasks_capped(labels, MAX_TASKS, parents)
    leaves = _Grouping(capped, labels, parents)
    top = _Grouping(parents, labels, parents)
    parent_of = parent_index(leaves.names, top.names, dict(zip(capped, parents, strict=True)))
    return leaves, parent_of


def _served_logits(
    router: TrainedRouter, tfidf: sparse.csr_matrix, groups: int
) -> np.ndarray | None:
    """The version's own task logits for these rows, when its segments are read by a
    classifier over ``groups`` groups (else None)."""
    segments = router.segments
    if segments is None or segments.top != TOP_CLASSIFIER or segments.term_weights is None:
        return None
    if segments.bias is None or len(segments.bias) != groups:
        return None
    return np.asarray(np.asarray(tfidf @ segments.term_weights) + segments.bias)


def _hinted_parent(hint: str, parents: set[str]) -> str | None:
    """The dataset's parent task a request's task hint names: the hint itself, or the longest
    parent it sits under (``writing/poems`` → ``writing``); None when it names none."""
    if hint in parents:
        return hint
    under = [p for p in parents if hint.startswith(f"{p}/")]
    return max(under, key=len) if under else None


def _within(logits: np.ndarray, leaf_parents: list[str], wanted: list[str | None]) -> np.ndarray:
    """``logits`` (prompts, leaves) with each prompt's leaves outside its ``wanted`` parent
    ruled out; a prompt wanting none, or a parent none of whose leaves is a group, keeps all."""
    outside = np.array([[w is not None and w != q for q in leaf_parents] for w in wanted])
    outside &= ~outside.all(axis=1, keepdims=True)
    return np.where(outside, -np.inf, logits)


def feedback_task_levels(
    router: TrainedRouter,
    family: str | None,
    base: Levels,
    base_prompts: list[str],
    prompts: list[str],
    hints: list[str] | None = None,
) -> Levels:
    """(label, parent) of each of ``prompts`` read by the version ``router`` (whose report's
    incumbent family is ``family``), trained on ``base_prompts`` with ``base`` levels. A task
    hint the request gave (``hints``, "" for none) decides instead where it names one of the
    data's labels, or its parent task (the subtask then read within that parent); a hint
    naming neither is a task the data never saw: the prompt is read as if it had none."""
    if not prompts:
        return [], []
    hints = hints or [""] * len(prompts)
    known = dict(zip(*base, strict=True))  # label → parent
    wanted = [
        known[h] if h in known else _hinted_parent(h, set(base[1])) if h else None for h in hints
    ]
    labels, parents = _read_levels(router, family, base, base_prompts, prompts, wanted)
    for k, hint in enumerate(hints):
        if hint and hint in known:
            labels[k], parents[k] = hint, known[hint]
    return labels, parents


def _read_levels(
    router: TrainedRouter,
    family: str | None,
    base: Levels,
    base_prompts: list[str],
    prompts: list[str],
    wanted: list[str | None],
) -> Levels:
    """``feedback_task_levels`` without exact hints: each prompt's level as the version reads
    it, within the parent task it is ``wanted`` in (None: any)."""
    rows = _fitted_rows(len(base_prompts))
    labels = [base[0][i] for i in rows]
    parents = [base[1][i] for i in rows]
    tfidf = router.featurizer.tfidf_matrix(prompts)
    top = _Grouping(parents, labels, parents)
    served = None
    if family == TASKS_FAMILY:
        served = _served_logits(router, tfidf, len(top.names))
    if not has_subtasks(labels, parents):
        if served is None:
            fitted = router.featurizer.tfidf_matrix([base_prompts[i] for i in rows])
            term, bias = classifier_fit(fitted, top.ids, len(top.names))
            served = np.asarray(tfidf @ term) + bias
        return _named(np.argmax(_within(served, top.parents, wanted), axis=1), top)
    leaves, parent_of = _leaf_grouping(labels, parents)
    if family == SUBTASKS_FAMILY:
        served_leaves = _served_logits(router, tfidf, len(leaves.names))
        if served_leaves is not None:
            return _named(np.argmax(_within(served_leaves, leaves.parents, wanted), axis=1), leaves)
    fitted = router.featurizer.tfidf_matrix([base_prompts[i] for i in rows])
    term, bias = nested_classifier_fit(fitted, leaves.ids, len(leaves.names), parent_of)
    leaf_logits = np.asarray(tfidf @ term) + bias
    if served is not None:  # the served parent first (a hinted one instead), then its children
        served_parents = [top.parents[g] for g in np.argmax(served, axis=1)]
        wanted = [w or p for w, p in zip(wanted, served_parents, strict=True)]
    # A parent whose children were all pooled elsewhere keeps the rule's own reading.
    return _named(np.argmax(_within(leaf_logits, leaves.parents, wanted), axis=1), leaves)


def _named(group: np.ndarray, grouping: _Grouping) -> Levels:
    chosen = [int(g) for g in group]
    return [grouping.labels[g] for g in chosen], [grouping.parents[g] for g in chosen]
