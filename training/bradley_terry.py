"""The Bradley-Terry fit of a preference dataset's comparisons (``training.preferences``): each
model's strength as a linear function of prompt features, and its expected win rate against the
field per prompt.

Bounded: at most ``MAX_COMPARISONS`` comparisons (a deterministic sample beyond that),
``MAX_ITERATIONS`` L-BFGS iterations over a sparse design of ``2·(d+1)`` non-zeros per comparison.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from training.preferences import Comparisons

MAX_COMPARISONS = 200_000  # ~0.3 GB of sparse design at 48 features
REGULARIZATION = 1.0  # inverse L2 strength of the logistic fit
MAX_ITERATIONS = 300
SEED = 0


def _sample(found: Comparisons) -> np.ndarray:
    """Indices of the comparisons to learn from: all, or an even deterministic sample."""
    total = len(found.outcome)
    if total <= MAX_COMPARISONS:
        return np.arange(total)
    return np.sort(np.random.default_rng(SEED).choice(total, MAX_COMPARISONS, replace=False))


def _design(dense: np.ndarray, prompts: np.ndarray, a: np.ndarray, b: np.ndarray, m: int) -> Any:
    """Sparse rows ``phi(x) (x) e_a - phi(x) (x) e_b``: model ``a``'s strength minus model ``b``'s."""
    from scipy import sparse

    rows, width = len(prompts), dense.shape[1]
    values = dense[prompts]
    data = np.concatenate([values, -values], axis=1).reshape(-1)
    columns = np.concatenate(
        [a[:, None] * width + np.arange(width), b[:, None] * width + np.arange(width)], axis=1
    ).reshape(-1)
    indptr = np.arange(0, rows * 2 * width + 1, 2 * width)
    return sparse.csr_matrix((data, columns, indptr), shape=(rows, m * width))


def _prompt_features(prompts: list[str]) -> np.ndarray:
    """The featurizer's dense features, standardised, with a constant for each model's bias."""
    from training.learner.featurizer import featurizer_fit

    _, _, dense = featurizer_fit(prompts)
    spread = dense.std(axis=0)
    scaled = (dense - dense.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return np.hstack([scaled, np.ones((len(prompts), 1))])


def strengths_fit(found: Comparisons) -> np.ndarray:
    """(prompts, models) Bradley-Terry strengths ``s(x, m) = w_m . phi(x)`` for every pair.

    A decided comparison is one row (every other one stated from the loser's side, so both
    classes occur); a tie is two half-weight rows, one won by each side."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    features = _prompt_features(found.prompts)
    chosen = _sample(found)
    prompt = np.asarray(found.prompt_index)[chosen]
    a, b = np.asarray(found.a)[chosen], np.asarray(found.b)[chosen]
    outcome = np.asarray(found.outcome)[chosen]
    m = len(found.models)
    tie = outcome == 0.5
    flip = (np.arange(len(outcome)) % 2 == 1) & ~tie
    sign = np.where(flip, -1.0, 1.0)
    design = sparse.diags(sign) @ _design(features, prompt, a, b, m)
    rows = sparse.vstack([design, design[tie]])
    target = np.concatenate(
        [np.where(tie, 1.0, np.where(flip, 1.0 - outcome, outcome)), np.zeros(int(tie.sum()))]
    )
    weight = np.concatenate([np.where(tie, 0.5, 1.0), np.full(int(tie.sum()), 0.5)])
    fit = LogisticRegression(C=REGULARIZATION, fit_intercept=False, max_iter=MAX_ITERATIONS)
    fit.fit(rows, target, sample_weight=weight)
    weights = fit.coef_.reshape(m, features.shape[1])
    return np.asarray(features @ weights.T)


def field_win_rates(strengths: np.ndarray) -> np.ndarray:
    """Each model's mean win probability against every other model, per prompt, in 0..1."""
    m = strengths.shape[1]
    total = np.zeros_like(strengths)
    for k in range(m):
        total += 1.0 / (1.0 + np.exp(-(strengths - strengths[:, [k]])))
    rates: np.ndarray = (total - 0.5) / (m - 1)  # drop the model's own 0.5 against itself
    return rates
