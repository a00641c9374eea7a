"""A cascade evaluated before use: its expected score and cost on a router version's held-out
rows for a sweep of pre-call gate thresholds, beside that router's own curve.

The gate is the router's predicted score for a step's model on the prompt (the pre-call gate of
``routing.pipeline_spec``); the rows are the ones the version's report was computed on (out of
fold, or the test dataset), kept by training (``training.heldout``). The replay is a few numpy
passes over at most ``HELDOUT_MAX_ROWS`` rows (milliseconds); the result is cached per (router
version, steps) so a dashboard reload reads no storage.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import orjson
from django.core.cache import cache

from routerhub.domain import Conflict, InvalidInput
from training.heldout import HeldOut, heldout_load
from training.learner import metrics
from training.learner.cascade import CascadePoint, cascade_point, cascade_sweep
from training.models import RouterVersion

CACHE_SECONDS = 3600
REPORT_FORMAT = 1  # part of the cache key: bump when the report's fields or method change
NOTE = (
    "Replayed on the router version's held-out rows: a step whose pre-call gate (the router's "
    "predicted score for its model) reaches the threshold answers, else the next step is tried; "
    "the last step always answers. A skipped step costs nothing. Post-call gates (json, regex, "
    "...) check answers the dataset does not hold: the replay assumes they pass, so a cascade "
    "that escalates on them costs more than shown."
)


def cascade_report(*, version: RouterVersion, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The report of a cascade with ``steps`` (a pipeline version's) on ``version``'s held-out
    rows; ``InvalidInput`` for a step the replay cannot evaluate, ``Conflict`` when the version
    kept no held-out rows."""
    digest = hashlib.sha256(orjson.dumps(steps, option=orjson.OPT_SORT_KEYS)).hexdigest()
    # The version's creation time too: ids restart with a fresh database, the cache may not.
    made = version.created_at.timestamp()
    key = f"cascade-report:{REPORT_FORMAT}:{version.pk}:{made}:{digest[:32]}"
    cached = cache.get(key)
    if cached is not None:
        return dict(cached)
    columns = _step_columns(version, steps)
    held = heldout_load(version)
    if held is None:
        raise Conflict(
            f"Version {version.number} of this router was trained before held-out predictions "
            "were kept; train a new version to evaluate cascades on it.",
            param="router",
        )
    report = _report(version, held, columns, steps)
    cache.set(key, report, CACHE_SECONDS)
    return report


def _step_columns(version: RouterVersion, steps: list[dict[str, Any]]) -> list[int]:
    models = list(version.candidates)
    for i, step in enumerate(steps):
        if step["model"] not in models:
            raise InvalidInput(
                f"steps[{i}]: {step['model']} is not one of this router version's models "
                f"({', '.join(models)}); the replay needs every step's scores on the same rows.",
                param="router",
            )
    return [models.index(step["model"]) for step in steps]


def _report(
    version: RouterVersion, held: HeldOut, columns: list[int], steps: list[dict[str, Any]]
) -> dict[str, Any]:
    sweep = cascade_sweep(held.predicted, held.scores, held.costs, columns)
    configured = cascade_point(
        held.predicted, held.scores, held.costs, columns, _configured(steps), None
    )
    models = [step["model"] for step in steps]
    router_curve = [
        {k: p.get(k) for k in ("tradeoff", "score", "cost", "share")}
        for p in version.report.get("curve", [])
    ]
    singles = version.report.get("models", [])
    max_cost = max(
        [p.cost for p in sweep]
        + [float(p["cost"]) for p in router_curve]
        + [float(m["mean_cost"]) for m in singles]
    )
    return {
        "router_version": version.number,
        "evaluation": {
            **{k: version.report.get("evaluation", {}).get(k) for k in ("method", "folds")},
            "rows": held.rows,
        },
        "note": NOTE,
        "steps": models,
        "curve": [_point_json(p, models) for p in sweep],
        "configured": _point_json(configured, models),
        "router_curve": router_curve,
        "models": singles,
        "aiq": _aiqs(version, sweep, router_curve, max_cost),
    }


def _aiqs(
    version: RouterVersion,
    sweep: list[CascadePoint],
    router_curve: list[dict[str, Any]],
    max_cost: float,
) -> dict[str, float | None] | None:
    """Both curves' AIQ over the same cost range (higher-is-better datasets only: the area
    under a curve of lower-is-better scores says nothing)."""
    if version.dataset is not None and not version.dataset.maximize:
        return None
    return {
        "cascade": _aiq([(p.cost, p.score) for p in sweep], max_cost),
        "router": _aiq([(float(p["cost"]), float(p["score"])) for p in router_curve], max_cost),
    }


def _configured(steps: list[dict[str, Any]]) -> list[float | None]:
    """Each step's own pre-call threshold; None where it has none (it always answers)."""
    return [
        float(step["pre_gate"]["min_score"]) if step.get("pre_gate") else None for step in steps
    ]


def _point_json(point: CascadePoint, models: list[str]) -> dict[str, Any]:
    return {
        "min_score": point.threshold,
        "score": round(point.score, 6),
        "cost": float(f"{point.cost:.10g}"),
        "share": [round(point.share.get(i, 0.0), 4) for i in range(len(models))],
    }


def _aiq(points: list[tuple[float, float]], max_cost: float) -> float | None:
    if not points:
        return None
    value = metrics.aiq(points, max_cost)
    return round(value, 6) if np.isfinite(value) else None
