"""Clusters with sub-clusters: without a task column, the global k-means clusters serve as
pseudo-tasks and each gets its own sub-clusters (``segments.cluster_segments_fit``), competing
out of fold with the plain clusters and none.

Quality-only data in the independent evaluation's shape (five task kinds, 7 equal-price models,
no task column): the MMLU-like prompts come in two subjects (a header and three of the subject's
words) with different best models; every other task has one best model, and half of its prompts
start with a task-specific preamble of eight made-up words that says nothing about the scores.
With 390 rows at most 8 global clusters fit (20 rows each in a training split), and k-means
spends them on the preambles before the subjects; sub-clusters inside the MMLU cluster find them.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from tests.training.router_files import (
    arrays_damage,
    assert_serving_decides_as_the_batch,
    reloaded,
)
from tests.training.task_prompts import holdout_report, labelled, task_prompt
from training.learner import artifacts
from training.learner.clusters import clusters_fit
from training.learner.segments import CLUSTERS_FAMILY, TOP_CENTROIDS
from training.learner.trainer import FitResult, TrainerConfig, TrainingData, router_fit

CONFIG = TrainerConfig(folds=5, threads=1, boost_rounds=40)
MODELS = 7
RIGHT, WRONG = 0.9, 0.4
SUBJECT_WORDS = {  # an MMLU-like question's subject: its header and three of its words
    "biology": ("mitosis", "ribosome", "chlorophyll", "genome", "membrane"),
    "economics": ("inflation", "tariff", "monopoly", "subsidy", "dividend"),
}
SUBJECT_BEST = {"biology": 0, "economics": 5}
TASK_ROWS = {"mmlu": 150, "gsm8k": 60, "cmmlu": 60, "arc": 60, "humaneval": 60}
_LETTERS = np.random.default_rng(7).integers(0, 26, size=(len(TASK_ROWS), 8, 6))
PREAMBLES = {  # per task: eight made-up words, on every other prompt of the task
    task: " ".join("".join(chr(97 + c) for c in word) for word in _LETTERS[t]) + "\n"
    for t, task in enumerate(TASK_ROWS)
}


def _data(seed: int, subjects_differ: bool = True) -> tuple[TrainingData, list[str]]:
    """The rows (without their task) and each row's task."""
    rng = np.random.default_rng(seed)
    prompts, tasks, best = [], [], []
    for t, (task, rows) in enumerate(TASK_ROWS.items()):
        for i in range(rows):
            if task == "mmlu":
                subject = list(SUBJECT_WORDS)[i % 2]
                words = list(rng.choice(SUBJECT_WORDS[subject], size=3))
                prompts.append(task_prompt(task, rng, subject, words))
                best.append(SUBJECT_BEST[subject] if subjects_differ else 0)
            else:
                prompts.append(PREAMBLES[task] * (i % 2) + task_prompt(task, rng))
                best.append(t)
            tasks.append(task)
    return labelled(prompts, best, (RIGHT, WRONG), rng, models=MODELS), tasks


def _per_task_floor(
    train: tuple[TrainingData, list[str]], test: tuple[TrainingData, list[str]]
) -> float:
    """Each task's best model chosen on the training rows, scored on the held-out rows."""
    (rows, tasks), (held_out, held_out_tasks) = train, test
    best = {t: int(np.argmax(rows.scores[np.asarray(tasks) == t].mean(axis=0))) for t in TASK_ROWS}
    picks = [best[t] for t in held_out_tasks]
    return float(held_out.scores[np.arange(len(picks)), picks].mean())


Fitted = tuple[FitResult, tuple[TrainingData, list[str]], tuple[TrainingData, list[str]]]


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    train, test = _data(0), _data(1)
    return router_fit(train[0], CONFIG), train, test


def test_sub_clusters_are_chosen_only_by_beating_the_plain_clusters_out_of_fold(
    fitted: Fitted,
) -> None:
    fit = fitted[0]
    choice = fit.families
    assert choice is not None

    assert choice.k == CLUSTERS_FAMILY
    plain = max(v for k, v in choice.oof_scores.items() if isinstance(k, int))
    assert choice.oof_scores[CLUSTERS_FAMILY] > plain
    assert fit.router.segments is not None and fit.router.segments.top == TOP_CENTROIDS
    assert fit.router.clusters is None
    summary = choice.summary()  # the report's evaluation.incumbents
    assert summary["family"] == CLUSTERS_FAMILY and summary["k"] == choice.top_k() >= 2
    assert summary["out_of_fold"][CLUSTERS_FAMILY] > max(
        v for k, v in summary["out_of_fold"].items() if k.isdigit()
    )


def test_the_sub_cluster_floor_beats_the_per_task_floor_where_global_clusters_do_not(
    fitted: Fitted,
) -> None:
    fit, train, (test, tasks) = fitted
    assert fit.families is not None
    floor = _per_task_floor(train, (test, tasks))
    rows = np.arange(len(test.prompts))
    # What the router would serve without sub-clusters: the best plain k, fitted on every row.
    oof = fit.families.oof_scores
    k = max((k for k in oof if isinstance(k, int)), key=lambda k: (oof[k], -int(k)))
    _, dense = fit.router.featurizer.transform_many(train[0].prompts)
    plain = clusters_fit(dense, train[0].scores, int(k), CONFIG.seed)

    incumbents = fit.router.cluster_incumbents(test.prompts)
    plain_incumbents = plain.incumbents(fit.router.featurizer.transform_many(test.prompts)[1])

    assert incumbents is not None
    assert float(test.scores[rows, incumbents].mean()) > floor + 0.05
    assert float(test.scores[rows, plain_incumbents].mean()) < floor + 0.02


def test_without_a_task_column_tradeoff_zero_beats_the_per_task_floor(fitted: Fitted) -> None:
    fit, train, test = fitted

    score = float(holdout_report(fit.router, test[0])["curve"][0]["score"])

    # MMLU is a quarter of the rows; its subjects' best models gain 0.25 on each of them. (The
    # per-model heads learn the subject words here too: main's router also clears this bar.)
    assert score > _per_task_floor(train, test) + 0.05


def test_where_no_cluster_has_sub_structure_plain_clusters_stay(fitted: Fitted) -> None:
    data, _ = _data(0, subjects_differ=False)

    choice = router_fit(data, CONFIG).families

    assert choice is not None and isinstance(choice.k, int)


def test_serving_decides_as_the_batch_with_sub_clusters_and_after_a_reload(
    fitted: Fitted,
) -> None:
    fit, _, (test, _) = fitted
    files = artifacts.router_to_files(fit.router)
    assert json.loads(files[artifacts.ROUTER_FILE])["segment_top"] == TOP_CENTROIDS
    restored = reloaded(files)
    assert restored.segments is not None and restored.segments.top == TOP_CENTROIDS
    prompts = test.prompts[::7]

    for router in (fit.router, restored):
        assert_serving_decides_as_the_batch(router, prompts)


@pytest.mark.parametrize(
    ("damage", "meta_top"),
    [
        (lambda a: a.update(segment_top_centroids=a["segment_top_centroids"][:, :-1]), None),
        (lambda a: a.update(segment_owner=a["segment_owner"] + 50), None),
        (lambda a: a.pop("segment_top_centroids"), None),
        (lambda a: None, "classifier"),  # read as task segments: no classifier stored
        (lambda a: None, "something-else"),
    ],
)
def test_malformed_sub_cluster_arrays_are_refused_at_load(
    fitted: Fitted, damage: Callable[[dict[str, np.ndarray]], object], meta_top: str | None
) -> None:
    files = artifacts.router_to_files(fitted[0].router)
    arrays_damage(files, damage)
    if meta_top is not None:
        meta = json.loads(files[artifacts.ROUTER_FILE])
        meta["segment_top"] = meta_top
        files[artifacts.ROUTER_FILE] = json.dumps(meta).encode()

    with pytest.raises(artifacts.ArtifactError, match="segments"):
        reloaded(files)
