"""Router evaluation metrics: RouteLLM's APGR/CPT for two models, RouterBench's AIQ for any number.

``routellm_*`` reproduce RouteLLM's ``routellm/evals/benchmarks.py`` and ``evaluate.py``:
thresholds are the decile edges of the router's strong-win scores
(``pandas.qcut(scores, 10, retbins=True)``); at each edge the strong model takes the rows with
score ``>=`` the edge (``>`` for the last edge); accuracy and the strong share are percentages;
the points are sorted by strong share; AUC is the trapezoid area over the strong share (as a
fraction); APGR normalises it between the all-weak and all-strong lines; CPT(p) interpolates the
strong share at which accuracy reaches weak + p·(strong - weak).

``aiq`` follows RouterBench's ``evaluation/AIQ.py``: the area under the non-decreasing upper
convex hull of (cost, quality) points, extended flat to a shared maximum cost and divided by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RouteLLMCurve:
    strong_percentage: np.ndarray  # sorted ascending, in percent
    accuracy: np.ndarray  # percent, aligned with strong_percentage
    weak_accuracy: float  # percent
    strong_accuracy: float  # percent


def routellm_curve(
    strong_win_rates: np.ndarray,
    strong_scores: np.ndarray,
    weak_scores: np.ndarray,
    num_results: int = 10,
) -> RouteLLMCurve:
    """The (strong %, accuracy %) points of RouteLLM's threshold sweep."""
    rates = np.asarray(strong_win_rates, dtype=np.float64)
    strong = np.asarray(strong_scores, dtype=np.float64)
    weak = np.asarray(weak_scores, dtype=np.float64)
    try:
        _, thresholds = pd.qcut(rates, num_results, retbins=True)
    except ValueError:
        # RouteLLM would raise on duplicate decile edges (e.g. a constant router); dropping
        # duplicates keeps the same thresholds it would have used had they been distinct.
        _, thresholds = pd.qcut(rates, num_results, retbins=True, duplicates="drop")
    points = []
    last = len(thresholds) - 1
    for i, threshold in enumerate(thresholds):
        selection = rates >= threshold if i != last else rates > threshold
        results = np.where(selection, strong, weak)
        points.append((selection.sum() / len(rates) * 100, results.sum() / len(results) * 100))
    # RouteLLM sorts a DataFrame of <= 11 rows with pandas' default quicksort, which numpy
    # runs as a stable insertion sort at that size; a stable sort reproduces its tie order.
    order = np.argsort(np.array([p[0] for p in points]), kind="stable")
    return RouteLLMCurve(
        strong_percentage=np.array([points[i][0] for i in order]),
        accuracy=np.array([points[i][1] for i in order]),
        weak_accuracy=float(weak.mean() * 100),
        strong_accuracy=float(strong.mean() * 100),
    )


def routellm_apgr(curve: RouteLLMCurve) -> float:
    """Average performance gap recovered: (AUC - weak AUC) / (strong AUC - weak AUC)."""
    x = curve.strong_percentage / 100
    auc = float(np.trapezoid(curve.accuracy, x))
    weak_auc = float(np.trapezoid(np.full(len(x), curve.weak_accuracy), x))
    strong_auc = float(np.trapezoid(np.full(len(x), curve.strong_accuracy), x))
    if strong_auc == weak_auc:
        return float("nan")
    return (auc - weak_auc) / (strong_auc - weak_auc)


def routellm_cpt(curve: RouteLLMCurve, fraction: float) -> float:
    """Call-performance threshold: % strong calls needed to recover ``fraction`` of the gap."""
    target = fraction * (curve.strong_accuracy - curve.weak_accuracy) + curve.weak_accuracy
    return float(np.interp(target, curve.accuracy, curve.strong_percentage))


def nondecreasing_hull(points: Sequence[tuple[float, float]]) -> np.ndarray:
    """Upper convex hull of (cost, quality) points, cut where quality stops increasing."""
    unique = sorted({(float(c), float(q)) for c, q in points})
    # For equal cost only the best quality can be on an upper hull.
    best: dict[float, float] = {}
    for cost, quality in unique:
        best[cost] = max(quality, best.get(cost, -np.inf))
    hull: list[tuple[float, float]] = []
    for point in sorted(best.items()):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            # Pop the middle point when it lies on or below the segment to the new point.
            if (x2 - x1) * (point[1] - y1) - (y2 - y1) * (point[0] - x1) >= 0:
                hull.pop()
            else:
                break
        hull.append(point)
    kept = [hull[0]]
    for point in hull[1:]:
        if point[1] >= kept[-1][1]:
            kept.append(point)
    return np.array(kept)


def aiq(points: Sequence[tuple[float, float]], max_cost: float) -> float:
    """RouterBench's AIQ: hull area from its cheapest point to ``max_cost``, over ``max_cost``."""
    hull = nondecreasing_hull(points)
    if max_cost <= 0:
        return float(hull[:, 1].max())
    extended = np.vstack([hull, [max_cost, hull[-1, 1]]])
    return float(np.trapezoid(extended[:, 1], extended[:, 0]) / max_cost)


def cheapest_reaching(
    curve: Sequence[tuple[float, float]], quality: float, tolerance: float = 1e-12
) -> float | None:
    """Lowest cost among (cost, quality) points whose quality reaches ``quality``."""
    costs = [c for c, q in curve if q >= quality - tolerance]
    return min(costs) if costs else None


def best_quality_within(curve: Sequence[tuple[float, float]], budget: float) -> float | None:
    """Highest quality among (cost, quality) points costing at most ``budget``."""
    qualities = [q for c, q in curve if c <= budget * (1 + 1e-9)]
    return max(qualities) if qualities else None


def bootstrap_interval(
    values: np.ndarray, *, reps: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (rows resampled, seeded)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(reps, len(values)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def slice_table(
    groups: Sequence[str], routed: np.ndarray, scores: np.ndarray, models: Sequence[str]
) -> list[dict[str, object]]:
    """Per slice: the routed score with its bootstrap interval, the slice's best single model,
    and the routed-minus-best difference with its paired bootstrap interval."""
    labels = np.asarray(groups, dtype=object)
    table: list[dict[str, object]] = []
    for label in sorted(set(labels.tolist())):
        rows = labels == label
        means = scores[rows].mean(axis=0)
        best = int(np.argmax(means))
        gain = routed[rows] - scores[rows, best]
        table.append(
            {
                "slice": str(label),
                "rows": int(rows.sum()),
                "routed": round(float(routed[rows].mean()), 4),
                "routed_ci95": [round(v, 4) for v in bootstrap_interval(routed[rows])],
                "best_single": str(models[best]),
                "best_single_score": round(float(means[best]), 4),
                "gain_ci95": [round(v, 4) for v in bootstrap_interval(gain)],
            }
        )
    return table
