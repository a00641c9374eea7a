"""A cascade's expected score and cost on held-out rows, for a sweep of pre-call gate thresholds.

A cascade serves the first of its steps whose gate passes, and its last step when none does. On
a dataset only the pre-call gate can be replayed: the router's held-out (out-of-fold) predicted
score for the step's model on the row's prompt, against the threshold. Post-call gates (JSON,
regex, ...) check an answer the dataset does not hold, so the replay assumes they pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SWEEP_QUANTILES = np.linspace(0.0, 1.0, 21)


@dataclass(frozen=True)
class CascadePoint:
    threshold: float | None  # None: the steps' own thresholds (the configured cascade)
    score: float  # mean score of the served answers (dataset units)
    cost: float  # mean cost per request
    share: dict[int, float]  # step index -> share of rows it served


def cascade_served(
    predicted: np.ndarray, steps: list[int], thresholds: list[float | None]
) -> np.ndarray:
    """Per row, the index into ``steps`` of the step that serves it.

    ``predicted`` (n, models) are held-out predicted scores; ``steps`` the model column of each
    step; ``thresholds[i]`` step i's pre-call gate (None: no gate, the step always answers). The
    last step's threshold is ignored: it always answers.
    """
    n = predicted.shape[0]
    served = np.full(n, len(steps) - 1, dtype=np.int64)
    open_rows = np.ones(n, dtype=bool)
    for i, (column, threshold) in enumerate(zip(steps[:-1], thresholds[:-1], strict=True)):
        passes = open_rows if threshold is None else open_rows & (predicted[:, column] >= threshold)
        served[passes] = i
        open_rows &= ~passes
    return served


def cascade_point(
    predicted: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    steps: list[int],
    thresholds: list[float | None],
    threshold: float | None,
) -> CascadePoint:
    """The cascade's mean score and cost when pre-call gates use ``thresholds``; a skipped step
    costs nothing (its call is never made), so each row costs what its serving step costs."""
    served = cascade_served(predicted, steps, thresholds)
    rows = np.arange(len(served))
    columns = np.asarray(steps)[served]
    counts = np.bincount(served, minlength=len(steps)) / max(1, len(served))
    return CascadePoint(
        threshold=threshold,
        score=float(scores[rows, columns].mean()),
        cost=float(costs[rows, columns].mean()),
        share={i: float(counts[i]) for i in range(len(steps)) if counts[i] > 0},
    )


def sweep_thresholds(predicted: np.ndarray, steps: list[int]) -> list[float]:
    """Thresholds spanning the gated steps' held-out predictions (their quantiles, ascending):
    from every gated step answering to almost every row reaching the last step."""
    gated = predicted[:, sorted(set(steps[:-1]))]
    if gated.size == 0:
        return []
    values = np.append(np.quantile(gated.ravel(), SWEEP_QUANTILES), gated.max() + 2e-6)
    # Rounded down to 6 decimals, so a row at a quantile still reaches the threshold shown.
    return sorted({float(np.floor(v * 1e6) / 1e6) for v in values})


def cascade_sweep(
    predicted: np.ndarray, scores: np.ndarray, costs: np.ndarray, steps: list[int]
) -> list[CascadePoint]:
    """One point per threshold, the same threshold gating every step but the last."""
    return [
        cascade_point(predicted, scores, costs, steps, [t] * len(steps), t)
        for t in sweep_thresholds(predicted, steps)
    ]
