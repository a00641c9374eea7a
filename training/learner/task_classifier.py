"""The task classifier of task segments (``segments.py``): which task a prompt belongs to, and
how sure that is — a linear rule on the prompt's TF-IDF vector either way.

Two kinds compete out of fold, on the same folds as the segments' incumbents:

- complement naive Bayes (``NB_ALPHA``): one pass over the rows, and it picks out rare words
  that only one task uses (on the tests' generated data it told two tasks in one format apart
  on every row where a logistic regression missed 3-6%);
- a multinomial logistic regression (``LR_C``, LBFGS capped at ``LR_MAX_ITER`` iterations),
  tried only while the rows' stored TF-IDF entries times tasks stay under ``LR_MAX_WORK`` (its cost
  grows with both; a logistic regression on the TF-IDF and dense features with 57 tasks on 3,000
  MMLU prompts took 140 CPU s for five fits). Where tasks share a layout (ARC rewritten in
  MMLU's, ``bench.router_semisynthetic``'s ``task+mc``) it read MMLU as ARC less often.

The kind with the higher out-of-fold accuracy is served (ties: naive Bayes). Subtasks
(``parent/child`` labels) are read by ``nested_classifier_fit`` alone: naive Bayes on the parent,
then on the parent's children. Its out-of-fold
logits also give the temperature (``temperature_fit``, by log-loss) that turns the logits into
a task posterior, which the soft incumbent weighs each task's means by (``segments.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import sparse

KIND_NB, KIND_LR = "naive_bayes", "logistic"
NB_ALPHA = 0.1  # additive smoothing of naive Bayes' term counts
LR_C = 10.0  # inverse L2 strength of the logistic regression (TF-IDF rows have unit norm)
LR_MAX_ITER = 100
LR_MAX_WORK = 20_000_000  # stored TF-IDF entries times tasks past which the LR is not tried
NEVER = -1e9  # the logit bias of a task the classifier saw no row of
LOG_TEMPERATURE_BOUNDS = (-7.0, 7.0)  # e^±7: from a near-argmax to a near-uniform posterior
LOSS_FLOOR = 1e-4  # a row's probability of its own task counts at least this in the log-loss
# Subtasks: the parent classifier's logits count this many times the children's, so a prompt's
# parent decides first. Why two stages: on the semi-synthetic subtopics (MMLU/ARC/MBPP keyword
# families, seed 0) one classifier over the 12 children was right on 64% of held-out prompts and
# its incumbents 0.003 above the per-task floor; parent then child, 72% and 0.015 above.
PARENT_WEIGHT = 100.0


@dataclass(frozen=True)
class TaskReading:
    """How a prompt's task is read: the classifier's kind, and the temperature of its logits
    for the soft incumbent (None: the argmax task's best model, as first served)."""

    kind: str = KIND_NB
    temperature: float | None = None

    def summary(self, nested: bool = False) -> dict[str, str | float]:
        """The report's account of it (``evaluation.incumbents.task_reading``): the classifier
        (``nested_naive_bayes`` for subtasks' two-stage rule) and the temperature, or
        "argmax" when the argmax task's best serves."""
        temperature = "argmax" if self.temperature is None else round(self.temperature, 4)
        return {
            "classifier": "nested_naive_bayes" if nested else self.kind,
            "temperature": temperature,
        }


def classifier_kinds(tfidf: sparse.csr_matrix, tasks: int) -> tuple[str, ...]:
    """The kinds worth fitting on these rows: naive Bayes always, the LR within its budget."""
    return (KIND_NB, KIND_LR) if tfidf.nnz * tasks <= LR_MAX_WORK else (KIND_NB,)


def classifier_fit(
    tfidf: sparse.csr_matrix, task: np.ndarray, tasks: int, kind: str = KIND_NB
) -> tuple[np.ndarray, np.ndarray]:
    """(term weights (vocabulary, tasks) float32, bias (tasks,)) of a ``kind`` classifier fitted
    on these rows: its decision is the argmax of ``tfidf @ term + bias``."""
    term = np.zeros((tfidf.shape[1], tasks), dtype=np.float32)
    bias = np.full(tasks, NEVER)
    present = np.unique(task)
    bias[present] = 0.0
    if len(present) < 2:
        return term, bias
    if kind == KIND_NB:
        from sklearn.naive_bayes import ComplementNB  # fit-time only

        # ComplementNB's decision for two classes or more: argmax of X @ feature_log_prob_.T.
        model = ComplementNB(alpha=NB_ALPHA).fit(tfidf, task)
        term[:, present] = np.asarray(model.feature_log_prob_).T
        return term, bias
    from sklearn.linear_model import LogisticRegression  # fit-time only

    model = LogisticRegression(C=LR_C, max_iter=LR_MAX_ITER).fit(tfidf, task)
    coef, intercept = np.asarray(model.coef_), np.asarray(model.intercept_)
    if len(present) == 2:  # one logit for the second class: softmax([0, z]) is its sigmoid
        term[:, present[1]], bias[present[1]] = coef[0], intercept[0]
    else:
        term[:, present], bias[present] = coef.T, intercept
    return term, bias


def nested_classifier_fit(
    tfidf: sparse.csr_matrix, task: np.ndarray, tasks: int, parent_of: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(term weights, bias) of subtasks as one linear rule: ``PARENT_WEIGHT`` times the parent
    naive Bayes classifier's (fitted on every row) plus each parent's own of its children
    (fitted on its rows alone), so the argmax is in effect the parent's, then its child's."""
    parent_of = np.where(parent_of >= 0, parent_of, parent_of.max() + 1 + np.arange(tasks))
    row_parent = parent_of[task]
    parent_term, parent_bias = classifier_fit(tfidf, row_parent, int(parent_of.max()) + 1)
    term = PARENT_WEIGHT * parent_term[:, parent_of].astype(np.float64)
    bias = PARENT_WEIGHT * parent_bias[parent_of]
    for parent in np.unique(parent_of):
        children = np.flatnonzero(parent_of == parent)
        rows = row_parent == parent
        local = np.searchsorted(children, task[rows])
        child_term, child_bias = classifier_fit(tfidf[rows], local, len(children))
        term[:, children] += child_term
        bias[children] += child_bias
    return term.astype(np.float32), bias


def accuracy(logits: np.ndarray, task: np.ndarray) -> float:
    """The share of rows whose highest logit (n, tasks) is their own ``task``."""
    return float((np.argmax(logits, axis=1) == task).mean())


def kind_choose(logits: dict[str, np.ndarray], task: np.ndarray) -> str:
    """The kind whose out-of-fold logits (with bias) name the right task most often (ties go
    to naive Bayes, the first)."""
    return max(logits, key=lambda kind: (accuracy(logits[kind], task), kind == KIND_NB))


def posterior(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of ``logits`` (n, tasks) / ``temperature`` (a task with bias NEVER gets 0)."""
    z = np.atleast_2d(logits)
    z = np.exp((z - z.max(axis=1, keepdims=True)) / temperature)
    return np.asarray(z / z.sum(axis=1, keepdims=True))


def temperature_fit(logits: np.ndarray, task: np.ndarray) -> float:
    """The temperature minimising the log-loss of ``posterior(logits, t)`` on rows whose task
    is known (out-of-fold logits: a fit's own rows would call for overconfidence)."""
    from scipy.optimize import minimize_scalar  # fit-time only

    rows = np.arange(len(task))

    def loss(log_t: float) -> float:
        chance = posterior(logits, float(np.exp(log_t)))[rows, task]
        return float(-np.log(np.maximum(chance, LOSS_FLOOR)).mean())

    found = minimize_scalar(loss, bounds=LOG_TEMPERATURE_BOUNDS, method="bounded")
    return float(np.exp(found.x))


def reading_choose(
    logits: dict[str, np.ndarray],
    task: np.ndarray,
    scores: np.ndarray,
    served: Callable[[np.ndarray, float | None], np.ndarray],
) -> tuple[TaskReading, np.ndarray]:
    """The reading served, from each kind's out-of-fold logits and ``served(logits,
    temperature)``, the rows' out-of-fold incumbents under a reading: the kind with the higher
    accuracy (``kind_choose``), and its temperature when the soft incumbent scores higher than
    the argmax task's best (ties: the argmax's); with those incumbents. The temperature is
    fitted on every row's out-of-fold logits, then judged on the same rows: one number chosen
    on the rows it is scored on, as the incumbents' family and k are."""
    kind = kind_choose(logits, task)
    temperature = temperature_fit(logits[kind], task)
    hard, soft = served(logits[kind], None), served(logits[kind], temperature)
    rows = np.arange(len(task))
    if float(scores[rows, soft].mean()) > float(scores[rows, hard].mean()):
        return TaskReading(kind, temperature), soft
    return TaskReading(kind), hard
