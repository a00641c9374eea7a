"""The evaluation report of API.md, computed only on rows the scoring models did not train on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from training.learner import metrics
from training.learner.calibration import TRADEOFF_GRID
from training.learner.router import TrainedRouter, mix_keys
from training.learner.task_labels import task_levels

RANDOM_SEED = 0
MAX_CLUSTERS = 8
ROWS_PER_CLUSTER = 40  # fewer clusters on small data, so each slice has rows to speak of
MAX_TASK_SLICES = 60  # a report lists at most this many task slices (MMLU has 57 subjects)


def _identity(value: float) -> float:
    return value


def _r(value: float | None, digits: int = 6) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


def _cost(value: float) -> float:
    return float(f"{value:.10g}")


def report_build(
    *,
    router: TrainedRouter,
    predicted: np.ndarray,
    prompts: list[str],
    scores: np.ndarray,
    costs: np.ndarray,
    evaluation: dict[str, Any],
    display: Callable[[float], float] = _identity,
    tasks: list[str] | None = None,
    task_parents: list[str] | None = None,
    incumbents: np.ndarray | None = None,
    picks: np.ndarray | None = None,
) -> dict[str, Any]:
    """Report for ``predicted`` (n, m) on held-out rows with their actual ``scores``/``costs``.
    ``scores`` are oriented higher-is-better; ``display`` maps them back to the dataset's
    units for the score fields (metrics such as APGR and AIQ stay in the oriented units).
    ``tasks`` (each row's task when the dataset names one, ``task_parents`` its parent task:
    ``task_labels.task_levels``) are the report's slices, else prompt clusters. ``incumbents``:
    the rows' cluster-best models (out-of-fold ones for out-of-fold rows; by default the
    router's clusters assign them). ``picks`` (tradeoffs, n): the rows' decisions (nested
    cross-validation, ``nested.py``) instead of the router's."""
    n, m = scores.shape
    models = router.models
    mean_scores, mean_costs = scores.mean(axis=0), costs.mean(axis=0)
    best = int(np.argmax(mean_scores))
    keys = mix_keys(prompts)
    if incumbents is None:
        incumbents = router.cluster_incumbents(prompts)
    if picks is None:
        picks = _decisions(router, predicted, keys, incumbents)
    curve, points = _curve(router, picks, scores, costs, display)
    singles = [(float(mean_costs[j]), float(mean_scores[j])) for j in range(m)]
    max_cost = max(c for c, _ in points + singles)

    half_budget = 0.5 * float(mean_costs[best])
    report: dict[str, Any] = {
        "evaluation": evaluation,
        **_baselines(models, scores, costs, display),
        "costs": "decisions (here and at serving) use the per-model mean costs of the training "
        f"rows ({evaluation.get('cost_source', 'given')}); the curve's costs are the evaluated "
        "rows' own; catalog prices at serving only change the expected costs shown",
        "curve": curve,
        "aiq": _r(metrics.aiq(points, max_cost)),
        "aiq_zero_router": _r(metrics.aiq(singles, max_cost)),
        "cost_at_best_single_quality": metrics.cheapest_reaching(points, float(mean_scores[best])),
        "score_at_half_best_cost": _optional_display(
            metrics.best_quality_within(points, half_budget), display
        ),
        "tradeoff_zero_gain": _r(points[0][1] - float(mean_scores[best])),
    }
    routed = scores[np.arange(n), picks[0]]
    gain = metrics.bootstrap_interval(routed - scores[:, best])
    report["tradeoff_zero_gain_ci95"] = [_r(gain[0], 4), _r(gain[1], 4)]
    report["verdict"] = _verdict(report, gain, priced=_priced(evaluation, mean_costs))
    report["slices"] = _slices(router, prompts, tasks, task_parents, routed, scores)
    if m == 2:
        report.update(_two_model_metrics(router, predicted, scores, display))
        report["random"].update(_routellm_random(scores, best))
    return report


def _decisions(
    router: TrainedRouter, predicted: np.ndarray, keys: np.ndarray, incumbents: np.ndarray | None
) -> np.ndarray:
    """(tradeoffs, n): each row's model under the router's own policy at every tradeoff."""
    return np.vstack(
        [router.choose_many(predicted, float(t), keys, incumbents) for t in TRADEOFF_GRID]
    )


def _curve(
    router: TrainedRouter,
    picks: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    display: Callable[[float], float],
) -> tuple[list[dict[str, Any]], list[tuple[float, float]]]:
    """The report's curve, one point per tradeoff (``picks`` (tradeoffs, n): each row's model),
    and each point's (cost, oriented score)."""
    n, m = scores.shape
    rows = np.arange(n)
    curve: list[dict[str, Any]] = []
    points: list[tuple[float, float]] = []
    for tradeoff, picked in zip(TRADEOFF_GRID, picks, strict=True):
        lam = float(router.lambdas[router.policy_index(float(tradeoff))])
        counts = np.bincount(picked, minlength=m) / n
        score, cost = float(scores[rows, picked].mean()), _cost(float(costs[rows, picked].mean()))
        points.append((cost, score))
        curve.append(
            {
                "tradeoff": float(tradeoff),
                "lambda": _r(lam, 8),
                "score": _r(display(score)),
                "cost": cost,
                "share": {
                    router.models[j]: _r(float(counts[j]), 4) for j in range(m) if counts[j] > 0
                },
            }
        )
    return curve, points


def _baselines(
    models: list[str], scores: np.ndarray, costs: np.ndarray, display: Callable[[float], float]
) -> dict[str, Any]:
    """Each model alone, the best single model, the oracle and random choice."""
    rows = np.arange(len(scores))
    mean_scores, mean_costs = scores.mean(axis=0), costs.mean(axis=0)
    best = int(np.argmax(mean_scores))
    best_rows = scores == scores.max(axis=1, keepdims=True)
    oracle_pick = np.argmin(np.where(best_rows, costs, np.inf), axis=1)
    return {
        "models": [
            {
                "id": models[j],
                "mean_score": _r(display(float(mean_scores[j]))),
                "mean_cost": _cost(float(mean_costs[j])),
            }
            for j in range(len(models))
        ],
        "best_single": {
            "id": models[best],
            "score": _r(display(float(mean_scores[best]))),
            "cost": _cost(float(mean_costs[best])),
        },
        "oracle": {
            "score": _r(display(float(scores[rows, oracle_pick].mean()))),
            "cost": _cost(float(costs[rows, oracle_pick].mean())),
        },
        "random": {
            "score": _r(display(float(mean_scores.mean()))),
            "cost": _cost(float(mean_costs.mean())),
        },
    }


def _priced(evaluation: dict[str, Any], mean_costs: np.ndarray) -> bool:
    """Whether the costs are prices: not the rank stand-in of data without costs, nor all equal."""
    if evaluation.get("cost_source") == "rank":
        return False
    return bool(np.ptp(mean_costs) > 1e-12 * max(float(np.abs(mean_costs).max()), 1e-300))


def _verdict(report: dict[str, Any], gain: tuple[float, float], *, priced: bool) -> str:
    """A plain sentence: does routing beat the zero router (and the best model) on this data?
    Without prices (quality-only data) the zero router's only point that means anything is the
    best single model, so the sentence is about tradeoff 0 alone."""
    aiq, zero = report["aiq"], report["aiq_zero_router"]
    if not priced:
        head = (
            "This data has no prices (costs are missing, so each model's rank stands in for one, "
            "or all equal): the curve and AIQ are no price tradeoff, and the zero router's "
            "point is the best single model."
        )
    elif aiq is None or zero is None:
        head = "AIQ is undefined on this data."
    elif aiq > zero + 1e-4:
        head = f"Routing beats the zero router on this data (AIQ {aiq:.4f} vs {zero:.4f})."
    else:
        head = (
            f"No gain from routing on this data: AIQ {aiq:.4f} vs the zero router's {zero:.4f}; "
            "the router serves the best single models and their mixes."
        )
    if gain[0] > 0:
        tail = "At tradeoff 0 it beats the best single model (95% interval above 0)."
    elif gain[1] < 0:
        tail = "At tradeoff 0 it scores below the best single model (95% interval below 0)."
    else:
        tail = "At tradeoff 0 it is statistically level with the best single model."
    return f"{head} {tail}"


def _slices(
    router: TrainedRouter,
    prompts: list[str],
    tasks: list[str] | None,
    task_parents: list[str] | None,
    routed: np.ndarray,
    scores: np.ndarray,
) -> dict[str, Any]:
    """Tradeoff 0 per slice: by the dataset's task column when it has one, else by cluster."""
    against = "tradeoff 0 against each slice's best single model, 95% bootstrap intervals"
    if tasks is not None:
        groups, by = (
            _largest_tasks(_slice_level(task_levels(tasks, task_parents)[0], tasks)),
            "task",
        )
        note = f"the dataset's task column (at most {MAX_TASK_SLICES} tasks shown); {against}"
    else:
        groups, by = _clusters(router, prompts), "cluster"
        note = f"prompt clusters (k-means on the featurizer's dense features); {against}"
    return {
        "by": by,
        "note": note,
        "rows": metrics.slice_table(groups, routed, scores, router.models),
    }


def _slice_level(parents: list[str], labels: list[str]) -> list[str]:
    """``parent/child`` labels (``task_labels.py``) slice by the parent task when there are two
    parents or more (a benchmark's few tasks, not its dozens of subjects of a few rows each),
    else by the whole label as stored (``mmlu / anatomy`` stays so)."""
    return parents if len(set(parents)) >= 2 else labels


def _largest_tasks(tasks: list[str]) -> list[str]:
    """The tasks, with all but the ``MAX_TASK_SLICES`` - 1 largest pooled as "(other tasks)"."""
    names, counts = np.unique(np.asarray(tasks, dtype=object), return_counts=True)
    if len(names) <= MAX_TASK_SLICES:
        return list(tasks)
    kept = set(names[np.argsort(-counts, kind="stable")[: MAX_TASK_SLICES - 1]].tolist())
    return [t if t in kept else "(other tasks)" for t in tasks]


def _clusters(router: TrainedRouter, prompts: list[str]) -> list[str]:
    from sklearn.cluster import KMeans  # report-time only

    k = max(1, min(MAX_CLUSTERS, len(prompts) // ROWS_PER_CLUSTER))
    if k == 1:
        return ["all"] * len(prompts)
    _, dense = router.featurizer.transform_many(prompts)
    spread = dense.std(axis=0)
    scaled = (dense - dense.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    labels = KMeans(n_clusters=k, n_init=3, random_state=RANDOM_SEED).fit_predict(scaled)
    return [f"cluster-{label}" for label in labels]


def _optional_display(value: float | None, display: Callable[[float], float]) -> float | None:
    return None if value is None else _r(display(value))


def _two_model_metrics(
    router: TrainedRouter,
    predicted: np.ndarray,
    scores: np.ndarray,
    display: Callable[[float], float],
) -> dict[str, Any]:
    strong = int(np.argmax(scores.mean(axis=0)))
    weak = 1 - strong
    # The router's "strong win rate": how much more its score heads favour the strong model.
    rates = predicted[:, strong] - predicted[:, weak]
    curve = metrics.routellm_curve(rates, scores[:, strong], scores[:, weak])
    return {
        "strong_model": router.models[strong],
        "weak_model": router.models[weak],
        "apgr": _r(metrics.routellm_apgr(curve)),
        "cpt50": _r(metrics.routellm_cpt(curve, 0.5), 4),
        "cpt80": _r(metrics.routellm_cpt(curve, 0.8), 4),
        "routellm_points": [
            {"strong_percentage": _r(x, 4), "accuracy": _r(y, 4)}
            for x, y in zip(curve.strong_percentage, curve.accuracy, strict=True)
        ],
    }


def _routellm_random(scores: np.ndarray, strong: int) -> dict[str, Any]:
    """RouteLLM's random router: a uniform random strong-win rate per prompt (seeded)."""
    rates = np.random.default_rng(RANDOM_SEED).uniform(0.0, 1.0, len(scores))
    curve = metrics.routellm_curve(rates, scores[:, strong], scores[:, 1 - strong])
    return {
        "apgr": _r(metrics.routellm_apgr(curve)),
        "cpt50": _r(metrics.routellm_cpt(curve, 0.5), 4),
        "cpt80": _r(metrics.routellm_cpt(curve, 0.8), 4),
    }
