"""Choices made on out-of-fold predictions: blend weight, shrinkage, incumbent bonus, λ table."""

from __future__ import annotations

import numpy as np

from training.learner.router import choose

BLEND_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
TRADEOFF_GRID = np.round(np.linspace(0.0, 1.0, 21), 4)
LAMBDA_GRID = np.concatenate([[0.0], np.geomspace(1e-5, 1e5, 1001)])


def blend_weight(parts: np.ndarray, target: np.ndarray) -> float:
    """Weight of the linear head with the lowest out-of-fold squared error."""
    errors = [
        float(np.mean((w * parts[:, 0] + (1 - w) * parts[:, 1] - target) ** 2)) for w in BLEND_GRID
    ]
    return BLEND_GRID[int(np.argmin(errors))]


def shrinkage(predicted: np.ndarray, target: np.ndarray, prior: float) -> float:
    """Least-squares factor toward the prior: prior + s·(p - prior) ≈ target, s in [0, 1]."""
    centred = predicted - prior
    denominator = float(np.dot(centred, centred))
    if denominator <= 1e-12:
        return 0.0
    return float(np.clip(np.dot(centred, target - prior) / denominator, 0.0, 1.0))


def incumbent_bonus(
    predicted: np.ndarray, scores: np.ndarray, norm_costs: np.ndarray, incumbent: int
) -> float:
    """Smallest bonus for the incumbent that maximises the routed out-of-fold score at λ = 0.

    A large enough bonus routes everything to the incumbent, so the routed score at tradeoff 0
    can never fall below the best single model's on these rows.
    """
    spread = float(predicted.max() - predicted.min()) if predicted.size else 0.0
    candidates = [0.0, *np.linspace(0.0, spread, 41)[1:], spread + 1.0]
    rows = np.arange(len(scores))
    best_bonus, best_score = 0.0, -np.inf
    for bonus in candidates:
        vector = np.zeros(predicted.shape[1])
        vector[incumbent] = bonus
        picked = choose(predicted, norm_costs, vector, 0.0)
        routed = float(scores[rows, picked].mean())
        if routed > best_score + 1e-12:
            best_bonus, best_score = float(bonus), routed
    return best_bonus


def lambda_table(
    predicted: np.ndarray, costs: np.ndarray, norm_costs: np.ndarray, bonus: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """λ per tradeoff so that mean cost falls evenly from its λ=0 value to its cheapest value."""
    rows = np.arange(len(costs))
    mean_cost = np.array(
        [costs[rows, choose(predicted, norm_costs, bonus, lam)].mean() for lam in LAMBDA_GRID]
    )
    # Mean cost is non-increasing in λ up to ties; a running minimum makes the search monotone.
    mean_cost = np.minimum.accumulate(mean_cost)
    top, bottom = mean_cost[0], mean_cost[-1]
    lambdas = []
    for tradeoff in TRADEOFF_GRID:
        target = top - tradeoff * (top - bottom)
        reached = np.nonzero(mean_cost <= target + 1e-15 + 1e-9 * abs(target))[0]
        lambdas.append(float(LAMBDA_GRID[reached[0]]) if len(reached) else float(LAMBDA_GRID[-1]))
    return TRADEOFF_GRID.copy(), np.maximum.accumulate(np.array(lambdas))
