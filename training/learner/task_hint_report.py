"""A held-out report's ``evaluation.task_hints`` (issue 20): the test rows decided with their
own task as a request's hint (``task_hint.py``), against the same router without it, the
per-task floor (each task's best model on the training rows) and the best single model, with
paired bootstrap intervals (``metrics.bootstrap_interval``, as the report's own gain)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from training.learner import metrics
from training.learner.calibration import TRADEOFF_GRID
from training.learner.router import TrainedRouter, mix_keys
from training.learner.task_labels import task_levels


def _r(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def hinted_predictions(
    router: TrainedRouter, predicted: np.ndarray, labels: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted with each row's task hint blended in, rows the version had a hint row for)."""
    hint = router.task_hint
    out = np.array(predicted, dtype=np.float64, copy=True)
    applied = np.zeros(len(labels), dtype=bool)
    if hint is None:
        return out, applied
    every = list(range(len(router.models)))
    for i, label in enumerate(labels):
        row = hint.row_of(label)
        if row is not None:
            out[i] = hint.blended(out[i], row, every)
            applied[i] = True
    return out, applied


def per_task_floor_picks(
    train_labels: list[str], train_scores: np.ndarray, labels: list[str]
) -> np.ndarray:
    """Each row's task's best model on the training rows (the overall best for a task the
    training rows do not have)."""
    names = np.asarray(train_labels)
    best = {t: int(np.argmax(train_scores[names == t].mean(axis=0))) for t in set(train_labels)}
    overall = int(np.argmax(train_scores.mean(axis=0)))
    return np.array([best.get(t, overall) for t in labels], dtype=np.int64)


def task_hints_report(
    router: TrainedRouter,
    predicted: np.ndarray,
    test: tuple[list[str], np.ndarray, np.ndarray, list[str], list[str] | None],
    train: tuple[np.ndarray, list[str], list[str] | None],
    display: Callable[[float], float],
) -> dict[str, Any]:
    """``test``: (prompts, scores, costs, tasks, task parents); ``train``: (scores, tasks,
    task parents). Scores are oriented higher-is-better; ``display`` maps the score fields back
    to the dataset's units (intervals stay oriented, as the report's)."""
    prompts, scores, costs, tasks, parents = test
    train_scores, train_tasks, train_parents = train
    labels = task_levels(tasks, parents)[1]
    train_labels = task_levels(train_tasks, train_parents)[1]
    keys, rows = mix_keys(prompts), np.arange(len(prompts))
    incumbents = router.cluster_incumbents(prompts)
    hinted, applied = hinted_predictions(router, predicted, labels)
    plain = scores[rows, router.choose_many(predicted, 0.0, keys, incumbents)]
    with_hint = scores[rows, _hinted_picks(router, hinted, applied, 0.0, keys, incumbents)]
    floor = scores[rows, per_task_floor_picks(train_labels, train_scores, labels)]
    best = int(np.argmax(scores.mean(axis=0)))

    def interval(values: np.ndarray) -> list[float]:
        return [_r(v) for v in metrics.bootstrap_interval(values)]

    hint = router.task_hint
    found: dict[str, Any] = {
        "hint_model": None
        if hint is None
        else {
            "weight": hint.weight,
            "tasks": len(hint.tasks),
            "policy": "router" if hint.own_policy else "lambda",
        },
        "rows_hinted": int(applied.sum()),
        "tradeoff_zero_with_hints": _r(display(float(with_hint.mean()))),
        "tradeoff_zero_without_hints": _r(display(float(plain.mean()))),
        "per_task_floor": _r(display(float(floor.mean()))),
        "best_single": {"model": router.models[best], "score": _r(display(scores[:, best].mean()))},
        "gain_over_no_hints_ci95": interval(with_hint - plain),
        "gain_over_per_task_floor_ci95": interval(with_hint - floor),
        "gain_over_best_single_ci95": interval(with_hint - scores[:, best]),
        "curve_with_hints": _curve(
            router, (predicted, hinted, applied), keys, incumbents, (scores, costs), display
        ),
    }
    found["sentence"] = _sentence(found, hint is not None)
    return found


def _hinted_picks(
    router: TrainedRouter,
    hinted: np.ndarray,
    applied: np.ndarray,
    tradeoff: float,
    keys: np.ndarray,
    incumbents: np.ndarray | None,
) -> np.ndarray:
    """Each row's model at ``tradeoff``: the hinted decision where its task had a row, the
    router's own elsewhere (as serving decides). ``hinted`` must be the unhinted predictions at
    a tradeoff the hint does not apply at (``TrainedRouter.hint_applies``)."""
    own = router.choose_many(hinted, tradeoff, keys, incumbents)
    if router.task_hint is None or router.task_hint.own_policy:
        return own
    return np.where(applied, router.choose_hinted_many(hinted, tradeoff), own)


def _curve(
    router: TrainedRouter,
    predicted: tuple[np.ndarray, np.ndarray, np.ndarray],
    keys: np.ndarray,
    incumbents: np.ndarray | None,
    actual: tuple[np.ndarray, np.ndarray],
    display: Callable[[float], float],
) -> list[dict[str, float]]:
    """The curve of the decisions serving makes for requests naming their task (``predicted``:
    unhinted scores, hinted scores, rows hinted) on the rows' ``actual`` (scores, costs): hinted
    where the hint applies (tradeoff 0's policy row), the version's own elsewhere."""
    (scores, costs), rows, curve = actual, np.arange(len(actual[0])), []
    plain, hinted, applied = predicted
    for tradeoff in TRADEOFF_GRID:
        if router.hint_applies(float(tradeoff)):
            picked = _hinted_picks(router, hinted, applied, float(tradeoff), keys, incumbents)
        else:
            picked = router.choose_many(plain, float(tradeoff), keys, incumbents)
        curve.append(
            {
                "tradeoff": float(tradeoff),
                "score": _r(display(float(scores[rows, picked].mean())), 6),
                "cost": float(costs[rows, picked].mean()),
            }
        )
    return curve


def _sentence(found: dict[str, Any], has_hint: bool) -> str:
    if not has_hint:
        return (
            "This version has no task hint (it did not beat the heads out of fold on the "
            "training rows), so a request's task changes nothing."
        )
    low, high = found["gain_over_per_task_floor_ci95"]
    if low > 0:
        versus = "beats the per-task floor (the interval is above zero)"
    elif high < 0:
        versus = "falls below the per-task floor"
    else:
        versus = "is level with the per-task floor (the interval spans zero)"
    gain = found["gain_over_no_hints_ci95"]
    return (
        f"With each request's task as a hint, tradeoff 0 scores {found['tradeoff_zero_with_hints']}"
        f" against {found['tradeoff_zero_without_hints']} without (gain {gain[0]} … {gain[1]}) and "
        f"{versus}: {found['per_task_floor']}."
    )
