"""Task hints (training/learner/task_hint.py): a request naming its task blends that task's
means into the heads' predictions, where that won out of fold on the training rows.

The data: four subtasks of one parent (``quiz/a`` … ``quiz/d``) whose prompts come from one
generator (the prompt does not tell them apart), each with its own best model, beside two tasks
the prompt does reveal (``cmmlu``, ``humaneval``) with theirs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.training.router_files import arrays_damage, reloaded
from tests.training.task_prompts import WORDS, labelled, task_prompt
from training.learner import artifacts
from training.learner.router import mix_keys
from training.learner.task_hint import TaskHint, gain_accepted
from training.learner.task_hint_report import per_task_floor_picks, task_hints_report
from training.learner.trainer import FitResult, TrainerConfig, TrainingData, router_fit

CONFIG = TrainerConfig(folds=3, threads=1, boost_rounds=40)
MODELS = 7
SUBTASKS = {"quiz/a": 0, "quiz/b": 1, "quiz/c": 2, "quiz/d": 3}
OTHERS = {"cmmlu": 5, "humaneval": 6}


def _quiz_prompt(rng: np.random.Generator) -> str:
    return "Quiz question: " + " ".join(rng.choice(WORDS, size=12)) + "?"


def _data(seed: int, noise_labels: bool = False) -> TrainingData:
    rng = np.random.default_rng(seed)
    prompts, tasks, best = [], [], []
    for task, model in SUBTASKS.items():
        for _ in range(120):
            prompts.append(_quiz_prompt(rng))
            tasks.append(task)
            best.append(model)
    for task, model in OTHERS.items():
        for _ in range(60):
            prompts.append(task_prompt(task, rng))
            tasks.append(task)
            best.append(model)
    if noise_labels:  # labels that say nothing about which model is right
        tasks = [f"noise/{i}" for i in rng.integers(0, 6, size=len(tasks))]
    return labelled(prompts, best, (0.9, 0.4), rng, models=MODELS, tasks=tasks)


@pytest.fixture(scope="module")
def fitted() -> tuple[FitResult, TrainingData, TrainingData]:
    train, test = _data(0), _data(1)
    return router_fit(train, CONFIG), train, test


def _hints(fit: FitResult, train: TrainingData, test: TrainingData) -> dict[str, object]:
    assert train.tasks is not None and test.tasks is not None
    predicted = fit.router.predict_many(test.prompts)
    return task_hints_report(
        fit.router,
        predicted,
        (test.prompts, test.scores, test.costs, test.tasks, None),
        (train.scores, train.tasks, None),
        float,
    )


def test_with_the_hint_tradeoff_zero_beats_the_router_without_it_and_reaches_the_floor(
    fitted: tuple[FitResult, TrainingData, TrainingData],
) -> None:
    fit, train, test = fitted
    assert fit.router.task_hint is not None
    found = _hints(fit, train, test)

    with_hint, without = found["tradeoff_zero_with_hints"], found["tradeoff_zero_without_hints"]
    assert isinstance(with_hint, float) and isinstance(without, float)
    assert with_hint > without + 0.1  # the subtasks' own bests, which the prompt hides
    assert with_hint >= found["per_task_floor"] - 0.01  # type: ignore[operator]
    low, _ = found["gain_over_no_hints_ci95"]  # type: ignore[misc]
    assert low > 0
    assert found["rows_hinted"] == len(test.prompts)
    assert "tradeoff 0 scores" in str(found["sentence"])


@pytest.mark.parametrize("seed", range(6))
def test_noise_task_labels_fit_no_hint_and_decide_as_without(seed: int) -> None:
    train = _data(seed, noise_labels=True)
    fit = router_fit(train, CONFIG)

    assert fit.router.task_hint is None
    files = artifacts.router_to_files(fit.router)
    assert json.loads(files[artifacts.ROUTER_FILE])["format_version"] != artifacts.FORMAT_TASK_HINT
    assert "task_hint" not in json.loads(files[artifacts.ROUTER_FILE])


def test_an_unknown_subtask_falls_back_to_its_parent_and_an_unknown_task_to_none(
    fitted: tuple[FitResult, TrainingData, TrainingData],
) -> None:
    hint = fitted[0].router.task_hint
    assert hint is not None
    assert hint.row_of("quiz/zzz") == hint.tasks.index("quiz")
    assert hint.row_of("quiz/b") == hint.tasks.index("quiz/b")
    assert hint.row_of("poetry") is None and hint.row_of("poetry/sonnets") is None
    # the parent's row: each subtask's best is right on a quarter of its rows
    parent = hint.means[hint.tasks.index("quiz")]
    assert parent[:4].min() > parent[4:].max()


def test_the_artifact_reloads_the_hint_and_decides_the_same(
    fitted: tuple[FitResult, TrainingData, TrainingData],
) -> None:
    fit, _, test = fitted
    files = artifacts.router_to_files(fit.router)
    assert json.loads(files[artifacts.ROUTER_FILE])["format_version"] == artifacts.FORMAT_TASK_HINT
    router = reloaded(files)
    hint, stored = router.task_hint, fit.router.task_hint
    assert hint is not None and stored is not None
    assert (hint.tasks, hint.weight, hint.own_policy) == (
        stored.tasks,
        stored.weight,
        stored.own_policy,
    )
    np.testing.assert_array_equal(hint.means, stored.means)
    assert (router.segments is None) == (fit.router.segments is None)
    if router.segments is not None and fit.router.segments is not None:
        assert router.segments.soft == fit.router.segments.soft
    assert test.tasks is not None
    every, picks = list(range(MODELS)), []
    for r in (fit.router, router):
        predicted = r.predict_many(test.prompts)
        task_hint = r.task_hint
        assert task_hint is not None
        rows = [task_hint.row_of(t) for t in test.tasks]
        hinted = np.vstack(
            [task_hint.blended(p, row, every) for p, row in zip(predicted, rows, strict=True)]
        )
        if task_hint.own_policy:
            incumbents = r.cluster_incumbents(test.prompts)
            picks.append(r.choose_many(hinted, 0.0, mix_keys(test.prompts), incumbents))
        else:
            picks.append(r.choose_hinted_many(hinted, 0.0))
    np.testing.assert_array_equal(picks[0], picks[1])


def test_a_version_without_a_hint_loads_as_before(
    fitted: tuple[FitResult, TrainingData, TrainingData],
) -> None:
    fit = fitted[0]
    hint = fit.router.task_hint
    fit.router.task_hint = None
    try:
        files = artifacts.router_to_files(fit.router)
    finally:
        fit.router.task_hint = hint
    meta = json.loads(files[artifacts.ROUTER_FILE])
    assert meta["format_version"] != artifacts.FORMAT_TASK_HINT and "task_hint" not in meta
    assert reloaded(files).task_hint is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda a: a.pop("task_hint_means"),
        lambda a: a.__setitem__("task_hint_means", a["task_hint_means"][:, :3]),
        lambda a: a.__setitem__("task_hint_means", a["task_hint_means"].astype(np.int64)),
        lambda a: a["task_hint_means"].__setitem__((0, 0), np.nan),
    ],
    ids=["missing", "wrong shape", "integers", "nan"],
)
def test_malformed_hint_arrays_are_refused_at_load(
    fitted: tuple[FitResult, TrainingData, TrainingData], damage: object
) -> None:
    files = artifacts.router_to_files(fitted[0].router)
    arrays_damage(files, damage)  # type: ignore[arg-type]
    with pytest.raises(artifacts.ArtifactError, match="task hint"):
        reloaded(files)


@pytest.mark.parametrize(
    "change",
    [
        {"weight": 0},
        {"weight": 1.5},
        {"weight": "0.5"},
        {"tasks": ["quiz", "quiz"]},
        {"tasks": "quiz"},
        {"tasks": ["x" * 201]},
        {"policy": "offsets"},
    ],
)
def test_malformed_hint_fields_are_refused_at_load(
    fitted: tuple[FitResult, TrainingData, TrainingData], change: dict[str, object]
) -> None:
    files = artifacts.router_to_files(fitted[0].router)
    meta = json.loads(files[artifacts.ROUTER_FILE])
    meta["task_hint"] |= change
    files[artifacts.ROUTER_FILE] = json.dumps(meta).encode()
    with pytest.raises(artifacts.ArtifactError, match="task hint"):
        reloaded(files)


def test_a_hint_under_an_older_format_number_is_refused(
    fitted: tuple[FitResult, TrainingData, TrainingData],
) -> None:
    files = artifacts.router_to_files(fitted[0].router)
    meta = json.loads(files[artifacts.ROUTER_FILE])
    meta["format_version"] = artifacts.FORMAT_SOFT_SEGMENTS
    files[artifacts.ROUTER_FILE] = json.dumps(meta).encode()
    with pytest.raises(artifacts.ArtifactError, match="format 7"):
        reloaded(files)


def test_the_per_task_floor_picks_each_task_best_on_the_training_rows() -> None:
    scores = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    picks = per_task_floor_picks(["a", "a", "b", "b", "b"], scores, ["b", "a", "unseen"])
    assert picks.tolist() == [1, 0, 1]  # unseen: the overall best


def test_blended_is_the_weighted_mean_of_heads_and_task_means() -> None:
    hint = TaskHint(("a", "b"), np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]]), 0.25, 0.0)
    blended = hint.blended(np.array([0.4, 0.8]), 1, [0, 1])
    np.testing.assert_allclose(blended, [0.3, 0.85])


def test_a_gain_counts_above_zero_past_its_standard_errors_and_past_the_best() -> None:
    """The one acceptance test the learner's blend and the bench's stacker share."""
    steady = np.array([0.2, 0.3, 0.25, 0.25])
    assert gain_accepted(steady, 2.0, None) == pytest.approx(0.25)
    assert gain_accepted(np.array([-0.1, 0.0, 0.05, 0.0]), None, None) is None  # not above 0
    noisy = np.array([1.0, -0.9, 1.0, -0.9])  # mean 0.05, SE ~0.55
    assert gain_accepted(noisy, 1.0, None) is None
    assert gain_accepted(noisy, None, None) == pytest.approx(0.05)
    assert gain_accepted(steady, 2.0, 0.25) is None  # a tie with the best is not better
    assert gain_accepted(steady, 2.0, 0.2) == pytest.approx(0.25)
