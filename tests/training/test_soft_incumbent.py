"""The soft incumbent of task segments: where the classifier cannot place a prompt between two
tasks, the model best in expectation over the task posterior serves it, not the argmax task's
best; chosen out of fold, stored as format 6, refused when damaged, and older versions keep
serving the argmax task's best.

Generated data: two multiple-choice tasks in one layout; half of each task's questions carry two
of the task's rare topic words, the other half nothing that tells the tasks apart. Model 0 is
right on 90% of alpha and 30% of beta, model 1 the reverse, model 2 on 75% of both: on the
undecidable half the argmax task's best is a coin toss worth 0.6, model 2 is worth 0.75.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from scipy import sparse

from tests.training.router_files import (
    arrays_damage,
    assert_serving_decides_as_the_batch,
    reloaded,
)
from tests.training.task_prompts import WORDS, binary_data
from training.learner import artifacts, segments
from training.learner.router import TrainedRouter, mix_keys
from training.learner.segments import PromptSegments, segments_fit
from training.learner.task_classifier import TaskReading
from training.learner.trainer import FitResult, TrainerConfig, TrainingData, router_fit
from training.predictor import Predictor

CONFIG = TrainerConfig(folds=3, threads=1, boost_rounds=40)
ROWS = 300  # per task
_LETTERS = np.random.default_rng(17).integers(0, 26, size=(2, 40, 7))
TOPICS = [["".join(chr(97 + c) for c in word) for word in _LETTERS[t]] for t in range(2)]
CHANCES = np.array(
    [
        [0.9, 0.3, 0.75, 0.5, 0.5, 0.5, 0.5],  # alpha
        [0.3, 0.9, 0.75, 0.5, 0.5, 0.5, 0.5],  # beta
    ]
)


def _prompt(task: int, marked: bool, rng: np.random.Generator) -> str:
    words = [*rng.choice(WORDS, size=10), *(rng.choice(TOPICS[task], size=2) if marked else [])]
    options = [" ".join(rng.choice(WORDS, size=3)) for _ in range(4)]
    return (
        f"{' '.join(rng.permutation(words))}?\n"
        + "".join(f"{'ABCD'[i]}. {o}\n" for i, o in enumerate(options))
        + "Answer:"
    )


def _data(seed: int) -> TrainingData:
    rng = np.random.default_rng(seed)
    task = np.repeat([0, 1], ROWS)
    prompts = [_prompt(int(t), i % 2 == 0, rng) for i, t in enumerate(task)]
    scores = (rng.random((len(task), CHANCES.shape[1])) < CHANCES[task]).astype(float)
    return binary_data(prompts, scores, [("alpha", "beta")[t] for t in task])


@pytest.fixture(scope="module")
def fitted() -> tuple[FitResult, TrainingData]:
    return router_fit(_data(0), CONFIG), _data(1)


def _floor(router: TrainedRouter, test: TrainingData) -> float:
    """The held-out score of the router's incumbents alone."""
    incumbents = router.cluster_incumbents(test.prompts)
    assert incumbents is not None
    return float(test.scores[np.arange(len(incumbents)), incumbents].mean())


def _hard(router: TrainedRouter) -> TrainedRouter:
    assert router.segments is not None
    return replace(router, segments=replace(router.segments, temperature=None))


def _segments(temperature: float | None) -> PromptSegments:
    """Task 0 in two sub-segments (dense x < 0: model 0 best, x > 0: model 0 barely), task 1
    in one (model 1 best); model 2 second on task 0's first and on task 1."""
    return PromptSegments.build(
        mean=np.zeros(2),
        scale=np.ones(2),
        centroids=np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]),
        owner=np.array([0, 0, 1]),
        best=np.array([0, 0, 1]),
        term_weights=np.eye(2, dtype=np.float32),
        bias=np.zeros(2),
        means=np.array([[0.9, 0.3, 0.75], [0.4, 0.2, 0.3], [0.3, 0.9, 0.75]]),
        temperature=None if temperature is None else np.array([temperature]),
    )


def test_the_soft_incumbent_is_the_best_model_in_expectation_over_the_task_posterior() -> None:
    # task 0 for sure, a tie between the tasks (near task 0's two sub-segments), task 1
    tfidf = sparse.csr_matrix([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5], [0.0, 1.0]])
    dense = np.array([[-1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])

    soft = _segments(temperature=0.05).incumbents_many(tfidf, dense)
    hard = _segments(temperature=None).incumbents_many(tfidf, dense)

    # A tie: 0.5 (0.9, 0.3, 0.75) + 0.5 (0.3, 0.9, 0.75) -> model 2; beside task 0's second
    # sub-segment 0.5 (0.4, 0.2, 0.3) + 0.5 (0.3, 0.9, 0.75) -> model 1.
    assert soft.tolist() == [0, 2, 1, 1]
    assert hard.tolist() == [0, 0, 0, 1]  # the argmax task (the first on a tie)
    one = _segments(temperature=0.05)
    for i in range(len(dense)):
        row = tfidf.getrow(i)
        assert one.incumbent_one(row.indices, row.data, dense[i]) == soft[i]


def test_built_segments_derive_each_groups_members_and_the_centroid_norms() -> None:
    built = _segments(temperature=None)

    # Task 0 owns sub-segments 0 and 1; task 1 only 2, padded with itself.
    assert built.members.tolist() == [[0, 1], [2, 2]]
    assert built.square_norms.tolist() == [1.0, 1.0, 0.0]


def test_where_tasks_cannot_be_told_apart_the_soft_incumbent_is_chosen_and_pays(
    fitted: tuple[FitResult, TrainingData],
) -> None:
    fit, test = fitted
    router = fit.router

    assert router.segments is not None and router.segments.soft
    # Soft: ~0.9 on the marked half, 0.75 on the rest; the argmax task's best ~0.6 there.
    assert _floor(router, test) > _floor(_hard(router), test) + 0.04


def test_a_soft_version_is_format_6_and_serves_as_the_batch_after_a_reload(
    fitted: tuple[FitResult, TrainingData],
) -> None:
    fit, test = fitted
    # without a task hint (task_hint.py; with one the format is 7, checked below)
    files = artifacts.router_to_files(dataclasses.replace(fit.router, task_hint=None))
    restored = reloaded(files)

    assert json.loads(files[artifacts.ROUTER_FILE])["format_version"] == 6
    assert restored.segments is not None and restored.segments.soft
    if fit.router.task_hint is not None:
        hinted = artifacts.router_to_files(fit.router)
        assert json.loads(hinted[artifacts.ROUTER_FILE])["format_version"] == 7
        hinted_segments = reloaded(hinted).segments
        assert hinted_segments is not None and hinted_segments.soft
    expected = fit.router.cluster_incumbents(test.prompts)
    assert np.array_equal(restored.cluster_incumbents(test.prompts), expected)
    for router in (fit.router, restored):
        assert_serving_decides_as_the_batch(router, test.prompts[::7])


def test_a_format_5_version_without_the_soft_arrays_serves_the_argmax_tasks_best(
    fitted: tuple[FitResult, TrainingData],
) -> None:
    fit, test = fitted
    files = artifacts.router_to_files(dataclasses.replace(fit.router, task_hint=None))
    meta = json.loads(files[artifacts.ROUTER_FILE])
    meta["format_version"] = artifacts.FORMAT_SEGMENTS
    files[artifacts.ROUTER_FILE] = json.dumps(meta).encode()
    arrays_damage(files, lambda a: [a.pop(k) for k in ("segment_means", "segment_temperature")])

    restored = reloaded(files)

    assert restored.segments is not None and not restored.segments.soft
    hard = _hard(fit.router).cluster_incumbents(test.prompts)
    assert np.array_equal(restored.cluster_incumbents(test.prompts), hard)
    assert_serving_decides_as_the_batch(restored, test.prompts[::7])


@pytest.mark.parametrize(
    "damage",
    [
        lambda a: a.pop("segment_means"),
        lambda a: a.pop("segment_temperature"),
        lambda a: a.update(segment_temperature=np.array([0.0])),
        # positive, but no fit makes it: the logits / t overflow and every prompt got model 0
        lambda a: a.update(segment_temperature=np.array([1e-310])),
        lambda a: a.update(segment_temperature=np.array([np.inf])),
        lambda a: a.update(segment_temperature=np.array([1.0, 2.0])),
        lambda a: a.update(segment_means=a["segment_means"][:, :-1]),
        lambda a: a.update(segment_means=np.full_like(a["segment_means"], np.nan)),
        lambda a: a.update(segment_means=a["segment_means"].astype(np.int64)),
        # means whose best is not the stored best: one of the two was damaged
        lambda a: a.update(segment_means=a["segment_means"][:, ::-1].copy()),
    ],
)
def test_malformed_soft_arrays_are_refused_at_load(
    fitted: tuple[FitResult, TrainingData],
    damage: Callable[[dict[str, np.ndarray]], object],
) -> None:
    files = artifacts.router_to_files(fitted[0].router)
    arrays_damage(files, damage)

    with pytest.raises(artifacts.ArtifactError, match="task segments"):
        reloaded(files)


def test_a_policy_without_an_incumbent_bonus_skips_the_segment_lookup(
    fitted: tuple[FitResult, TrainingData], monkeypatch: pytest.MonkeyPatch
) -> None:
    fit, test = fitted
    train = _data(0)
    tfidf, dense = fit.router.featurizer.transform_many(train.prompts)
    task = np.array([t == "beta" for t in (train.tasks or [])], dtype=np.int64)
    found = segments_fit(tfidf, dense, train.scores, task, 2, np.arange(len(task)) % 3, 0)
    bonus = np.zeros(len(fit.router.tradeoffs))
    bonus[0] = 0.5  # tradeoff 0 lifts the incumbent, tradeoff 1 does not
    router = replace(fit.router, segments=found, cluster_bonus=bonus)
    predictor = Predictor(1, "checksum", router)
    prompts = test.prompts[:5]
    looked_up: list[int] = []  # the serving path keeps no count: the lookup is wrapped here
    lookup = PromptSegments.incumbent_one

    def counted(segments: PromptSegments, *args: np.ndarray) -> int:
        looked_up.append(lookup(segments, *args))
        return looked_up[-1]

    monkeypatch.setattr(PromptSegments, "incumbent_one", counted)

    at_one = [predictor.rank(p, 1.0)[0].model for p in prompts]
    skipped = len(looked_up)
    at_zero = [predictor.rank(p, 0.0)[0].model for p in prompts]

    assert skipped == 0 and len(looked_up) == len(prompts)
    predicted, incumbents = router.predict_many(prompts), router.cluster_incumbents(prompts)
    assert incumbents is not None and looked_up == incumbents.tolist()
    for tradeoff, served in ((1.0, at_one), (0.0, at_zero)):
        picks = router.choose_many(predicted, tradeoff, mix_keys(prompts), incumbents)
        assert served == [router.models[i] for i in picks]


@pytest.mark.parametrize("soft", [True, False])
def test_incumbents_computed_in_chunks_of_rows_equal_those_of_the_whole_batch(
    fitted: tuple[FitResult, TrainingData], monkeypatch: pytest.MonkeyPatch, soft: bool
) -> None:
    fit, test = fitted
    router = fit.router if soft else _hard(fit.router)
    assert router.segments is not None and router.segments.soft == soft
    whole = router.cluster_incumbents(test.prompts)
    assert whole is not None and len(np.unique(whole)) > 1  # a dropped or moved row shows

    monkeypatch.setattr(segments, "CHUNK_ROWS", 7)  # not a divisor of the rows: a short last
    chunked = router.cluster_incumbents(test.prompts)

    assert chunked is not None and np.array_equal(chunked, whole)


def test_the_report_names_the_task_classifier_and_the_soft_temperature(
    fitted: tuple[FitResult, TrainingData],
) -> None:
    fit, _ = fitted
    assert fit.families is not None and fit.router.segments is not None
    temperature = float(np.asarray(fit.router.segments.temperature)[0])

    reading = fit.families.summary()["task_reading"]  # the report's evaluation.incumbents

    assert reading["tasks"]["classifier"] in {"naive_bayes", "logistic"}
    assert reading["tasks"]["temperature"] == round(temperature, 4)
    assert json.loads(json.dumps(reading)) == reading
    argmax = TaskReading("logistic").summary()
    assert argmax == {"classifier": "logistic", "temperature": "argmax"}
    assert TaskReading(temperature=0.5).summary(nested=True)["classifier"] == "nested_naive_bayes"
