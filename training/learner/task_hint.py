"""Task hints (issue 20): a request may name its task (``router: {"task": …}``, ``task`` on
``select``), and a version trained on data with a task column may then blend its heads'
predictions with that task's mean scores: ``(1 - w) · heads + w · task_mean``.

The form is the blend, not a stacker over the heads: its one number ``w`` and one table row per
task cannot extrapolate (``w = 1`` is the per-task floor, ``w = 0`` the heads), a parent task's
row is the same statistic over more rows (the fallback for an unknown subtask), and serving is one
row lookup. It measured level with a per-model logistic stacker on MMLU (README, "Task hints").

A hinted decision follows one of two rules, chosen out of fold with ``w`` and ``k``: the version's
own policy (offsets, hashed mixes, incumbent bonus) on the blended scores (``own_policy``), or
``score - λ · cost`` at the tradeoff's λ without them (``TrainedRouter.choose_hinted_many``):
the policy was calibrated on the unhinted heads, and at tradeoff 0 an offset may exclude a model
tied overall which is the best of some task. Ties go to the version's own policy.

Training (``task_hint_fit``) chooses ``w`` and the means' shrinkage ``k`` (pseudo-rows toward the
overall mean) on the training rows only: the heads' out-of-fold predictions blended with each
row's task means from the other folds, decided at tradeoff 0 as above, against the version's own
decisions (its policy, out-of-fold incumbents) at tradeoff 0. A blend is kept only where its
out-of-fold gain over the heads is at least ``MIN_GAIN_SE`` standard errors of the per-prompt
differences and beats the best gain of the same search in each of ``NULL_SHUFFLES`` within-fold
shuffles of the labels (the best of 60 configurations would pass the first test on noise labels;
ties and noise: no hint, and the version decides exactly as without one). As ``w``, ``k`` and the
rule are chosen at tradeoff 0, serving applies the hint only on that policy row
(``TrainedRouter.hint_applies``); at other tradeoffs a request decides as without its task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from training.learner.task_labels import SEPARATOR, task_levels, task_parts

WEIGHTS = tuple(round(float(w), 2) for w in np.linspace(0.1, 1.0, 10))
PSEUDO_ROWS = (0.0, 5.0, 20.0)
MIN_GAIN_SE = 1.0
# Label shuffles of the null: the chosen gain must beat every one (permutation p < 1/31).
NULL_SHUFFLES = 30
NULL_SEED = 20
MAX_TASK_CHARS = 200  # a hint longer than this is refused (400) before any lookup
MAX_HINT_TASKS = 4096  # rows a stored table may have (labels and their parents)


@dataclass(frozen=True)
class TaskHint:
    """The stored blend: ``tasks`` (labels and their parents), their mean score per model
    ``means`` (tasks, models), and the weight ``w`` of the means."""

    tasks: tuple[str, ...]
    means: np.ndarray
    weight: float
    pseudo_rows: float
    own_policy: bool = True  # decide with the version's policy (else score - λ · cost only)
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update({name: i for i, name in enumerate(self.tasks)})

    def row_of(self, task: str) -> int | None:
        """The table row serving ``task``: its own, else its parent's (``mmlu/x`` → ``mmlu``),
        else None (unknown: decide without the hint)."""
        row = self._index.get(task.strip())
        if row is None and SEPARATOR in task:
            row = self._index.get(task_parts(task)[0])
        return row

    def blended(self, predicted: np.ndarray, row: int, indices: list[int]) -> np.ndarray:
        """The candidates' ``predicted`` scores blended with the task's means."""
        return np.asarray((1.0 - self.weight) * predicted + self.weight * self.means[row, indices])

    def to_meta(self) -> dict[str, object]:
        return {
            "tasks": list(self.tasks),
            "weight": self.weight,
            "pseudo_rows": self.pseudo_rows,
            "policy": "router" if self.own_policy else "lambda",
        }


def task_means(scores: np.ndarray, ids: np.ndarray, count: int, k: float) -> np.ndarray:
    """(count, models) each id's mean score shrunk toward the overall mean by ``k`` rows."""
    overall = scores.mean(axis=0)
    sums = np.zeros((count, scores.shape[1]))
    np.add.at(sums, ids, scores)
    sizes = np.bincount(ids, minlength=count)[:, None].astype(np.float64)
    weight = sizes + k
    return np.asarray(
        np.where(weight > 0, (sums + k * overall) / np.where(weight > 0, weight, 1.0), overall)
    )


def oof_task_means(
    scores: np.ndarray, ids: np.ndarray, count: int, fold_of: np.ndarray, k: float
) -> np.ndarray:
    """(rows, models) each row's task mean from the other folds."""
    out = np.zeros(scores.shape)
    for fold in np.unique(fold_of):
        a, b = fold_of != fold, fold_of == fold
        out[b] = task_means(scores[a], ids[a], count, k)[ids[b]]
    return out


def task_hint_fit(
    tasks: list[str],
    parents: list[str] | None,
    scores: np.ndarray,
    oof_predicted: np.ndarray,
    fold_of: np.ndarray,
    decide: tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]],
) -> TaskHint | None:
    """The blend chosen out of fold (module doc), or None where it does not beat the router.
    ``decide``: (the version's policy, ``score - λ · cost``), each mapping (n, models)
    predictions to each row's chosen model at tradeoff 0."""
    parent_of, leaves = task_levels(tasks, parents)
    names = sorted(set(leaves))
    if len(names) < 2 or len(names) > MAX_HINT_TASKS // 2:
        return None
    index = {name: i for i, name in enumerate(names)}
    ids = np.array([index[leaf] for leaf in leaves])
    heads = scores[np.arange(len(scores)), decide[0](oof_predicted)]
    problem = (scores, oof_predicted, fold_of, heads, len(names))
    best = _best_blend(ids, problem, decide, MIN_GAIN_SE)
    if best is None:
        return None
    # Null: the same search with the labels shuffled within each fold (labels that say nothing);
    # the best of the configurations must beat the best it finds in every shuffle.
    rng = np.random.default_rng(NULL_SEED)
    null = []
    for _ in range(NULL_SHUFFLES):
        shuffled = fold_shuffled(ids, fold_of, rng)
        found = _best_blend(shuffled, problem, decide, None)
        null.append(0.0 if found is None else found[0])
    if best[0] <= max(null):
        return None
    _, w, k, rule = best
    return TaskHint(*_hint_table(names, parent_of, scores, ids, k), float(w), float(k), rule == 0)


def _best_blend(
    ids: np.ndarray,
    problem: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int],
    decide: tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]],
    min_se: float | None,
) -> tuple[float, float, float, int] | None:
    """(gain, w, k, rule) of the configuration whose decisions gain most over the ``heads``
    out of fold, counting only gains above zero and (``min_se``) that many standard errors."""
    scores, oof_predicted, fold_of, heads, count = problem
    rows = np.arange(len(scores))
    best: tuple[float, float, float, int] | None = None
    for k in PSEUDO_ROWS:
        means = oof_task_means(scores, ids, count, fold_of, k)
        for w in WEIGHTS:
            for rule, chooser in enumerate(decide):
                diff = scores[rows, chooser((1 - w) * oof_predicted + w * means)] - heads
                gain = gain_accepted(diff, min_se, None if best is None else best[0])
                if gain is not None:
                    best = (gain, w, k, rule)
    return best


def fold_shuffled(ids: np.ndarray, fold_of: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``ids`` with the labels shuffled within each fold (the null's labels, which say nothing)."""
    shuffled = ids.copy()
    for fold in np.unique(fold_of):
        at = np.flatnonzero(fold_of == fold)
        shuffled[at] = rng.permutation(ids[at])
    return shuffled


def gain_accepted(diff: np.ndarray, min_se: float | None, best_gain: float | None) -> float | None:
    """The mean gain of per-row ``diff`` (decided minus baseline) if it counts: above zero, at
    least ``min_se`` standard errors (no SE test when None) and above ``best_gain`` (if any) by
    more than 1e-12; else None."""
    gain = float(diff.mean())
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if min_se is not None else 0.0
    if (
        gain > 0
        and gain >= (min_se or 0.0) * se
        and (best_gain is None or gain > best_gain + 1e-12)
    ):
        return gain
    return None


def _hint_table(
    names: list[str], parent_of: list[str], scores: np.ndarray, ids: np.ndarray, k: float
) -> tuple[tuple[str, ...], np.ndarray]:
    """(the labels then the parents that are not labels, their means): a label's row from its
    own rows, a parent's (also where it is a label: ``T`` beside ``T/x``) from all its rows."""
    parents = sorted(set(parent_of))
    parent_id = {name: i for i, name in enumerate(parents)}
    parent_table = task_means(scores, np.array([parent_id[p] for p in parent_of]), len(parents), k)
    table = task_means(scores, ids, len(names), k)
    index = {name: i for i, name in enumerate(names)}
    extra = [p for p in parents if p not in index]
    for name in parents:
        if name in index:
            table[index[name]] = parent_table[parent_id[name]]
    table = np.vstack([table, *(parent_table[parent_id[p]][None] for p in extra)])
    return (*names, *extra), table


def task_hint_from_meta(meta: object, means: np.ndarray | None, models: int) -> TaskHint:
    """A stored hint, refused (``ValueError``) unless its tasks are distinct strings of at most
    ``MAX_TASK_CHARS``, its means a finite float (tasks, models) array and ``w`` in (0, 1]."""
    if not isinstance(meta, dict) or means is None:
        raise ValueError("task_hint without its tasks or its task_hint_means array")
    tasks, weight, k = meta.get("tasks"), meta.get("weight"), meta.get("pseudo_rows", 0.0)
    if not isinstance(tasks, list) or not all(
        isinstance(t, str) and 0 < len(t) <= MAX_TASK_CHARS for t in tasks
    ):
        raise ValueError("task_hint.tasks must be a list of task labels")
    if len(set(tasks)) != len(tasks) or not 0 < len(tasks) <= MAX_HINT_TASKS:
        raise ValueError("task_hint.tasks repeats a task, or has none or too many")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight <= 1:
        raise ValueError(f"task_hint.weight {weight!r} is not in (0, 1]")
    if isinstance(k, bool) or not isinstance(k, int | float) or not 0 <= k < 1e6:
        raise ValueError(f"task_hint.pseudo_rows {k!r} is not a row count")
    policy = meta.get("policy", "router")
    if policy not in ("router", "lambda"):
        raise ValueError(f"task_hint.policy {policy!r} is neither 'router' nor 'lambda'")
    if means.dtype.kind != "f" or means.shape != (len(tasks), models):
        raise ValueError(
            f"task_hint_means is {means.dtype} {means.shape}, expected float tasks×models"
        )
    table = np.asarray(means, dtype=np.float64)
    if not np.isfinite(table).all():
        raise ValueError("task_hint_means is not finite")
    return TaskHint(tuple(tasks), table, float(weight), float(k), own_policy=policy == "router")
