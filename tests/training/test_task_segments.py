"""Task segments: with the dataset's task column the router reaches the per-task floor where
unsupervised clusters cannot, and beats it where a task's subjects have their own best model.

Quality-only data in the independent evaluation's shape (7 equal-price models; GSM8K-, CMMLU-
and HumanEval-like prompts, each task with its own best model) plus two multiple-choice tasks in
one MMLU format with the same subjects (biology, economics; a header and three subject words per
question): "science" and "humanities" differ only by two rare topic words in each question.
In humanities model-3 is best. In science model-0 is (``subjects_differ=False``), or the best
model depends on the subject (biology: model-0, economics: model-1), so science's own best model
is right on about 70% of its rows and each subject's best on 95%.
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
from tests.training.task_prompts import WORDS, binary_data, holdout_report, labelled, task_prompt
from training.learner import artifacts, segments
from training.learner.segments import MAX_GROUPS, SUB_GRID
from training.learner.trainer import FitResult, TrainerConfig, TrainingData, router_fit

CONFIG = TrainerConfig(folds=3, threads=1, boost_rounds=40)
MODELS = 7
TASK_ROWS = {"science": 300, "humanities": 450, "gsm8k": 50, "cmmlu": 50, "humaneval": 50}
SUBJECTS = {  # the subjects' own frequent words: clusters inside a task can find them
    "biology": ("mitosis", "ribosome", "chlorophyll", "genome", "membrane"),
    "economics": ("inflation", "tariff", "monopoly", "subsidy", "dividend"),
}
_LETTERS = np.random.default_rng(99).integers(0, 26, size=(2, 60, 7))
# Each task's topic: 60 rare made-up words, two per question; only supervision sees them.
TOPICS = {
    task: ["".join(chr(97 + c) for c in word) for word in _LETTERS[t]]
    for t, task in enumerate(("science", "humanities"))
}
RIGHT, WRONG = 0.85, 0.5
BEST = {"humanities": 3, "gsm8k": 4, "cmmlu": 5, "humaneval": 6}  # science: the subject's index


def _mc_prompt(task: str, subject: str, rng: np.random.Generator) -> str:
    """The MMLU layout; of the question's 12 words three are the subject's, two the topic's."""
    words = [
        *rng.choice(WORDS, size=7),
        *rng.choice(SUBJECTS[subject], size=3),
        *rng.choice(TOPICS[task], size=2),
    ]
    options = [" ".join(rng.choice(WORDS, size=3)) for _ in range(4)]
    return (
        f"The following are multiple choice questions (with answers) about {subject}.\n\n"
        f"{' '.join(rng.permutation(words))}?\n"
        + "".join(f"{'ABCD'[i]}. {o}\n" for i, o in enumerate(options))
        + "Answer:"
    )


def _data(seed: int, subjects_differ: bool, with_tasks: bool = True) -> TrainingData:
    rng = np.random.default_rng(seed)
    prompts, tasks, best = [], [], []
    for task, rows in TASK_ROWS.items():
        for i in range(rows):
            subject = list(SUBJECTS)[i % len(SUBJECTS)]
            mc = task in TOPICS
            prompts.append(_mc_prompt(task, subject, rng) if mc else task_prompt(task, rng))
            tasks.append(task)
            science = list(SUBJECTS).index(subject) if subjects_differ else 0
            best.append(science if task == "science" else BEST[task])
    tasks_named = tasks if with_tasks else None
    return labelled(prompts, best, (RIGHT, WRONG), rng, models=MODELS, tasks=tasks_named)


def _tradeoff_zero(fit: FitResult, test: TrainingData) -> float:
    return float(holdout_report(fit.router, test)["curve"][0]["score"])


def _per_task_floor(train: TrainingData, test: TrainingData) -> float:
    """Each task's best model chosen on the training rows, scored on the held-out rows."""
    assert train.tasks is not None and test.tasks is not None
    tasks = np.asarray(train.tasks)
    best = {t: int(np.argmax(train.scores[tasks == t].mean(axis=0))) for t in TASK_ROWS}
    picks = [best[t] for t in test.tasks]
    return float(test.scores[np.arange(len(picks)), picks].mean())


Fitted = tuple[FitResult, TrainingData, TrainingData]


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    """Science's subjects with their own best models, trained with the task column."""
    train, test = _data(0, subjects_differ=True), _data(1, subjects_differ=True)
    return router_fit(train, CONFIG), train, test


def test_two_tasks_in_one_format_reach_the_per_task_floor_only_with_the_task_column() -> None:
    train, test = _data(0, subjects_differ=False), _data(1, subjects_differ=False)
    floor = _per_task_floor(train, test)

    supervised = router_fit(train, CONFIG)
    unsupervised = router_fit(_data(0, subjects_differ=False, with_tasks=False), CONFIG)

    assert supervised.router.segments is not None
    assert _tradeoff_zero(supervised, test) >= floor - 0.01
    # Without the column the two tasks look alike: the generator's point.
    assert _tradeoff_zero(unsupervised, test) < floor - 0.02


def test_a_task_whose_subjects_have_their_own_best_model_beats_the_per_task_floor(
    fitted: Fitted,
) -> None:
    fit, train, test = fitted
    floor = _per_task_floor(train, test)

    assert fit.router.segments is not None
    # Science is a third of the rows; its subjects' best models gain ~0.17 on each of them.
    assert _tradeoff_zero(fit, test) > floor + 0.03


def test_on_noise_with_a_task_column_tradeoff_zero_stays_at_the_best_single_model() -> None:
    rng = np.random.default_rng(5)
    rows = 600
    means = np.array([0.55, 0.6, 0.62, 0.66])  # the task column and the prompts say nothing
    scores = (rng.random((rows, len(means))) < means).astype(float)
    data = binary_data(
        [" ".join(rng.choice(WORDS, size=8)) + f" {i}" for i in range(rows)],
        scores,
        [f"task-{t}" for t in rng.integers(0, 4, size=rows)],
    )

    fit = router_fit(data, CONFIG)

    assert fit.nested is not None
    nested = float(scores[np.arange(rows), fit.nested.picks[0]].mean())
    assert nested >= float(scores.mean(axis=0).max()) - 0.03  # within the noise of 600 rows


def _saved(fit: FitResult) -> dict[str, bytes]:
    return artifacts.router_to_files(fit.router)


def test_serving_decides_as_the_batch_with_segments_and_after_a_reload(
    fitted: Fitted,
) -> None:
    fit, _, test = fitted
    restored = reloaded(_saved(fit))
    assert restored.segments is not None
    prompts = test.prompts[::9]

    for router in (fit.router, restored):
        assert_serving_decides_as_the_batch(router, prompts)
    # What every lookup derives from the stored arrays is built again at load, the same.
    assert fit.router.segments is not None
    np.testing.assert_array_equal(restored.segments.members, fit.router.segments.members)
    np.testing.assert_allclose(restored.segments.square_norms, fit.router.segments.square_norms)


def _overflowing(weights: np.ndarray) -> np.ndarray:
    wide = weights.astype(np.float64)
    wide[0, 0] = 1e39
    return wide


def _groups(arrays: dict[str, np.ndarray], groups: int) -> dict[str, np.ndarray]:
    """Valid arrays of ``groups`` tasks with one sub-segment each."""
    vocabulary, dense = len(arrays["segment_term_weights"]), len(arrays["segment_mean"])
    return {
        "segment_term_weights": np.zeros((vocabulary, groups), dtype=np.float32),
        "segment_bias": np.zeros(groups),
        "segment_centroids": np.zeros((groups, dense)),
        "segment_owner": np.arange(groups),
        "segment_best": np.zeros(groups, dtype=np.int64),
    }


def _tiled(arrays: dict[str, np.ndarray], times: int) -> dict[str, np.ndarray]:
    """Each sub-segment ``times`` over."""
    names = ("segment_centroids", "segment_owner", "segment_best")
    return {name: np.concatenate([arrays[name]] * times) for name in names}


@pytest.mark.parametrize(
    "damage",
    [
        lambda a: a.update(segment_owner=a["segment_owner"] + 5),  # a task that does not exist
        lambda a: a.update(segment_best=np.full_like(a["segment_best"], 99)),  # an unknown model
        lambda a: a.update(segment_best=a["segment_best"].astype(np.float64)),
        lambda a: a.update(segment_centroids=a["segment_centroids"][:, :-1]),
        lambda a: a.update(segment_term_weights=a["segment_term_weights"][:-1]),
        lambda a: a.update(segment_scale=np.zeros_like(a["segment_scale"])),
        lambda a: a.pop("segment_bias"),
        lambda a: a["segment_centroids"].__setitem__((0, 0), np.inf),
        # finite in float64, inf once cast to the served float32: NaN logits, a wrong task
        lambda a: a.update(segment_term_weights=_overflowing(a["segment_term_weights"])),
        # every owner in range, but task 1 left without a sub-segment
        lambda a: a.update(segment_owner=np.where(a["segment_owner"] == 1, 0, a["segment_owner"])),
        lambda a: a.update(_groups(a, MAX_GROUPS + 1)),  # more tasks than task_ids keeps
        lambda a: a.update(_tiled(a, SUB_GRID[-1] + 1)),  # more sub-segments than SUB_GRID's
    ],
)
def test_malformed_segment_arrays_are_refused_at_load(
    fitted: Fitted,
    damage: Callable[[dict[str, np.ndarray]], object],
) -> None:
    files = _saved(fitted[0])
    arrays_damage(files, damage)

    with pytest.raises(artifacts.ArtifactError, match="task segments"):
        reloaded(files)


def test_a_version_saved_before_segments_still_loads(
    fitted: Fitted,
) -> None:
    files = _saved(fitted[0])
    meta = json.loads(files[artifacts.ROUTER_FILE])
    assert meta["format_version"] == artifacts.FORMAT_SEGMENTS
    del meta["segments"], meta["cluster_bonus"]
    meta["format_version"] = 3
    files[artifacts.ROUTER_FILE] = json.dumps(meta).encode()

    restored = reloaded(files)

    assert restored.segments is None
    assert restored.predict_one_with_incumbent(fitted[2].prompts[0])[1] is None


def test_the_inner_cv_scores_the_task_best_the_final_fit_serves() -> None:
    # Task 0 (60 rows): model-0 right on 60%, model-1 on 55%; task 1 (600 rows): model-1 always.
    # Shrunk toward the overall means, task 0's best is model-1 in the final fit and on every
    # inner fold's training rows: its k = 1 candidate scores 33 out of fold, 2 sub-clusters
    # (model-0 in one) 35, so they are served. Scored as model-0 (the task's own best, which
    # k = 1 never serves), k = 1 would tie them at 36 and be kept, serving model-1 (33).
    pattern = (np.arange(60) // 3) % 20
    task_rows = np.column_stack([pattern < 12, pattern < 11]).astype(float)
    scores = np.vstack([task_rows, np.tile([0.0, 1.0], (600, 1))])
    group = np.repeat([0, 1], [60, 600])
    fold_of = np.arange(len(scores)) % 3
    scaled = np.random.default_rng(0).normal(size=(len(scores), 3))

    _, owner, best, _ = segments._sub_segments(scaled, scores, group, 2, fold_of, seed=0)

    assert (owner == 0).sum() == 2 and 0 in best[owner == 0]
