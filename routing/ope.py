"""Off-policy evaluation: what another routing policy would have scored on the logged traffic.

Each logged decision i has the served model aᵢ, its probability pᵢ under the served policy
(the propensity; exploration makes it < 1), the reward rᵢ (feedback score, 0..1) and a reward
model r̂(xᵢ, a) (the served version's predicted score of every candidate). A deterministic target
policy π picks π(xᵢ). Per decision:

- inverse propensity (IPS):  1[aᵢ = π(xᵢ)] / pᵢ · rᵢ
- doubly robust (DR):        r̂(xᵢ, π(xᵢ)) + 1[aᵢ = π(xᵢ)] / pᵢ · (rᵢ - r̂(xᵢ, aᵢ))

Both are unbiased when the propensities are right (DR also when they are not but r̂ is); the
estimate is the mean of the terms, with an analytic 95% interval mean ± 1.96 · sd / √n. Two
policies compared on the same decisions use the paired differences of their terms, so the
interval of the difference is much narrower than the two intervals side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Z95 = 1.959963984540054
Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95% confidence interval over ``n`` terms."""

    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "estimate": round(self.value, 6),
            "low": round(self.low, 6),
            "high": round(self.high, 6),
            "n": self.n,
        }


def mean_interval(terms: Floats) -> Estimate:
    """The mean of ``terms`` and its normal 95% interval (infinite with fewer than two terms)."""
    n = len(terms)
    if n == 0:
        return Estimate(math.nan, -math.inf, math.inf, 0)
    mean = float(np.mean(terms))
    if n < 2:
        return Estimate(mean, -math.inf, math.inf, n)
    half = Z95 * float(np.std(terms, ddof=1)) / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


def ips_terms(matches: Bools, propensities: Floats, rewards: Floats) -> Floats:
    """Per decision: 1[a = π(x)] / p · r."""
    return np.where(matches, rewards / propensities, 0.0)


def dr_terms(
    matches: Bools,
    propensities: Floats,
    rewards: Floats,
    predicted_target: Floats,
    predicted_served: Floats,
) -> Floats:
    """Per decision: r̂(x, π(x)) + 1[a = π(x)] / p · (r - r̂(x, a))."""
    correction = np.where(matches, (rewards - predicted_served) / propensities, 0.0)
    return predicted_target + correction


def paired_difference(baseline: Floats, candidate: Floats) -> Estimate:
    """candidate - baseline, decision by decision, and its interval."""
    return mean_interval(candidate - baseline)


def independent_difference(baseline: Floats, candidate: Floats) -> Estimate:
    """mean(candidate) - mean(baseline) of two separate samples (an A/B split), with the normal
    interval of unequal variances (Welch)."""
    if len(baseline) < 2 or len(candidate) < 2:
        return Estimate(math.nan, -math.inf, math.inf, len(baseline) + len(candidate))
    value = float(np.mean(candidate) - np.mean(baseline))
    spread = math.sqrt(
        float(np.var(candidate, ddof=1)) / len(candidate)
        + float(np.var(baseline, ddof=1)) / len(baseline)
    )
    return Estimate(
        value, value - Z95 * spread, value + Z95 * spread, len(baseline) + len(candidate)
    )
