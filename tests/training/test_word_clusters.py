"""Word clusters: without a task column, two tasks in one multiple-choice layout are told apart
by their content words (``word_clusters.py``), competing out of fold with the k-means clusters.

Quality-only data in the independent evaluation's shape (7 equal-price models, no task column):
GSM8K-, CMMLU- and HumanEval-like prompts, each task with its own best model, and two
multiple-choice tasks in one layout ("science", "humanities") whose questions draw their words
from each task's own vocabulary of made-up words. The surface varies across both alike: half of
the questions have long options, half carry numbers, so the dense features (SVD of the whole
prompt and its statistics) split on length and digits before they split on content.
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
from tests.training.task_prompts import WORDS, Untasked, labelled, per_task_floor, task_prompt
from training.learner import artifacts
from training.learner.clusters import WORDS_FAMILY, clusters_fit
from training.learner.segments import TOP_CLASSIFIER
from training.learner.trainer import FitResult, TrainerConfig, TrainingData, router_fit
from training.learner.word_clusters import content_columns, word_clusters_fit

CONFIG = TrainerConfig(folds=3, threads=1, boost_rounds=40)
MODELS = 7
TASK_ROWS = {"science": 240, "humanities": 240, "gsm8k": 60, "cmmlu": 60, "humaneval": 60}
BEST = {"science": 0, "humanities": 3, "gsm8k": 4, "cmmlu": 5, "humaneval": 6}
RIGHT, WRONG = 0.9, 0.45
_LETTERS = np.random.default_rng(11).integers(0, 26, size=(2, 12, 7))
VOCABULARY = {  # each multiple-choice task's own 12 made-up words, five per question
    task: ["".join(chr(97 + c) for c in word) for word in _LETTERS[t]]
    for t, task in enumerate(("science", "humanities"))
}


def _mc_prompt(task: str, i: int, rng: np.random.Generator) -> str:
    words = [*rng.choice(VOCABULARY[task], size=5), *rng.choice(WORDS, size=4)]
    if i % 4 >= 2:  # numbers in half of the questions, in both tasks alike
        words += [str(n) for n in rng.integers(10, 9999, size=6)]
    size = 9 if i % 2 else 1  # long options in the other half
    options = [" ".join(rng.choice(VOCABULARY[task], size=size)) for _ in range(4)]
    return (
        "The following is a multiple choice question. Answer with the letter only.\n\n"
        f"{' '.join(rng.permutation(words))}?\n"
        + "".join(f"{'ABCD'[j]}. {o}\n" for j, o in enumerate(options))
        + "Answer:"
    )


def _data(seed: int) -> Untasked:
    """The rows (without their task) and each row's task."""
    rng = np.random.default_rng(seed)
    prompts, tasks = [], []
    for task, rows in TASK_ROWS.items():
        for i in range(rows):
            mc = task in VOCABULARY
            prompts.append(_mc_prompt(task, i, rng) if mc else task_prompt(task, rng))
            tasks.append(task)
    best = [BEST[t] for t in tasks]
    return labelled(prompts, best, (RIGHT, WRONG), rng, models=MODELS), tasks


def _floor(test: TrainingData, picks: np.ndarray) -> float:
    return float(test.scores[np.arange(len(picks)), picks].mean())


Fitted = tuple[FitResult, Untasked, Untasked]


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    train, test = _data(0), _data(1)
    return router_fit(train[0], CONFIG), train, test


def test_word_clusters_win_out_of_fold_where_one_layout_hides_two_tasks(fitted: Fitted) -> None:
    choice = fitted[0].families
    assert choice is not None

    assert choice.k == WORDS_FAMILY
    others = [v for k, v in choice.oof_scores.items() if k != WORDS_FAMILY]
    assert choice.oof_scores[WORDS_FAMILY] > max(others)
    summary = choice.summary()  # the report's evaluation.incumbents
    assert summary["family"] == WORDS_FAMILY and summary["k"] >= 2


def test_the_word_cluster_floor_reaches_the_per_task_floor_where_k_means_does_not(
    fitted: Fitted,
) -> None:
    fit, (train, _), (test, _) = fitted
    assert fit.families is not None
    floor = per_task_floor(fitted[1], fitted[2])
    # What the router would serve without word clusters: the best plain k, fitted on every row.
    oof = fit.families.oof_scores
    k = max((k for k in oof if isinstance(k, int)), key=lambda k: (oof[k], -int(k)))
    _, dense = fit.router.featurizer.transform_many(train.prompts)
    plain = clusters_fit(dense, train.scores, int(k), CONFIG.seed)

    incumbents = fit.router.cluster_incumbents(test.prompts)
    plain_incumbents = plain.incumbents(fit.router.featurizer.transform_many(test.prompts)[1])

    assert incumbents is not None
    assert _floor(test, incumbents) >= floor - 0.015
    assert _floor(test, plain_incumbents) < floor - 0.02


def test_template_terms_get_no_weight_and_a_prompt_without_content_goes_to_the_largest_cluster(
    fitted: Fitted,
) -> None:
    fit, (train, _), _ = fitted
    tfidf, dense = fit.router.featurizer.transform_many(train.prompts)
    width = len(fit.router.featurizer.word_vocab)
    segments = word_clusters_fit(tfidf, dense, train.scores, 4, CONFIG.seed, width)
    assert segments.term_weights is not None

    template = np.setdiff1d(np.arange(tfidf.shape[1]), content_columns(tfidf, width))
    empty_prompt = "The following is a multiple choice question. Answer:"
    empty, empty_dense = fit.router.featurizer.transform_many([empty_prompt])
    groups = np.argmax(np.asarray(tfidf @ segments.term_weights) + segments.bias, axis=1)

    assert len(template) and not segments.term_weights[template].any()
    assert not (empty @ segments.term_weights).any()  # only template terms
    largest = int(np.argmax(np.bincount(groups, minlength=4)))
    assert segments.incumbents_many(empty, empty_dense)[0] == segments.best[largest]


def test_serving_decides_as_the_batch_with_word_clusters_and_after_a_reload(
    fitted: Fitted,
) -> None:
    fit, _, (test, _) = fitted
    files = artifacts.router_to_files(fit.router)
    meta = json.loads(files[artifacts.ROUTER_FILE])
    # Stored as task segments are (artifact format 5): a release that serves those serves these.
    assert meta["segments"] is True and "segment_top" not in meta
    restored = reloaded(files)
    assert restored.segments is not None and restored.segments.top == TOP_CLASSIFIER

    for router in (fit.router, restored):
        assert_serving_decides_as_the_batch(router, test.prompts[::9])


@pytest.mark.parametrize(
    "damage",
    [
        lambda a: a.update(segment_term_weights=a["segment_term_weights"][:-1]),
        lambda a: a.update(segment_bias=np.full_like(a["segment_bias"], np.inf)),
        lambda a: a.pop("segment_term_weights"),
    ],
)
def test_malformed_word_cluster_arrays_are_refused_at_load(
    fitted: Fitted, damage: Callable[[dict[str, np.ndarray]], object]
) -> None:
    files = artifacts.router_to_files(fitted[0].router)
    arrays_damage(files, damage)

    with pytest.raises(artifacts.ArtifactError, match="segments"):
        reloaded(files)


def test_word_clusters_can_be_switched_off_to_measure_what_they_add(fitted: Fitted) -> None:
    train = fitted[1][0]

    choice = router_fit(train, TrainerConfig(**{**CONFIG.__dict__, "word_clusters": False}))

    assert choice.families is not None and WORDS_FAMILY not in choice.families.oof_scores
