"""Online learning from feedback: per-model bias terms of a router version, between retrains.

Each feedback on a request a trained router served adds the residual ``r = clamp(score -
predicted, -1, 1)`` of the model that answered (``predicted`` is the score the decision recorded
in the usage record's trace) with a weight ``w`` to that router version's calibration. At serving
every candidate's predicted score gets its bias added before the decision (``Predictor.rank``)::

    bias(m) = clamp( Σ w·r / (Σ w + K), -B, B )

``K`` (``FEEDBACK_CALIBRATION_PRIOR_WEIGHT``) shrinks a bias learned from little feedback toward
0; ``B`` (``FEEDBACK_CALIBRATION_MAX_BIAS``) bounds it. Each contributor (an API key, or a
dashboard user) has ``W`` (``FEEDBACK_CALIBRATION_DAILY_WEIGHT``) of weight per router per UTC
day: an event weighs ``min(1, what is left)``, so feedback beyond the first ``W`` events of a day
weighs nothing. Hence one contributor's feedback in one day moves a bias by at most
``W / (W + K)`` where there is no other feedback, and by at most ``min(2B, 2W / (W + K))``
whatever the other feedback (README "Online learning from feedback" derives it).

The platform router ``router/auto`` is not calibrated online: it serves every organization.

Calibration belongs to a version (its predictions are what the residuals correct): a retrain
activates a new version whose calibration starts empty, and rolling back finds the old one's.
Serving reads it with the router row (``routing.routers``, cached ``ROUTER_CACHE_TTL``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from billing.models import UsageRecord
from routing.models import CalibrationAllowance, Feedback, RouterCalibration


def calibration_bias(router_id: int, version: int) -> dict[str, float]:
    """Each calibrated model's bias for ``router_id``'s version ``version`` (one query)."""
    rows = RouterCalibration.objects.filter(
        router_id=router_id, version=version, weight__gt=0
    ).values_list("model", "weight", "residual")
    return {model: bias_value(residual, weight) for model, weight, residual in rows}


def bias_value(residual: float, weight: float) -> float:
    """``clamp(Σ w·r / (Σ w + K), -B, B)`` (the module doc's formula)."""
    bound = float(settings.FEEDBACK_CALIBRATION_MAX_BIAS)
    shrunk = residual / (weight + float(settings.FEEDBACK_CALIBRATION_PRIOR_WEIGHT))
    return max(-bound, min(bound, shrunk))


def predicted_score(usage: UsageRecord) -> float | None:
    """The score the trained router predicted for the model that answered (None: not routed by
    a trained router, or the model was not among its ranked candidates)."""
    routing: Any = usage.trace_data.get("routing") or {}
    if not isinstance(routing, dict) or routing.get("strategy") != "trained":
        return None
    for choice in routing.get("ranked") or []:
        if isinstance(choice, dict) and choice.get("model") == usage.model:
            score = choice.get("score")
            return float(score) if isinstance(score, int | float) else None
    return None


def _allowance_take(usage: UsageRecord, contributor: str) -> float:
    """Up to one unit of the contributor's daily weight on this router (0 when it is spent)."""
    assert usage.router_id is not None
    where = {"router_id": usage.router_id, "contributor": contributor, "day": timezone.now().date()}
    CalibrationAllowance.objects.bulk_create(
        [CalibrationAllowance(organization_id=usage.organization_id, **where)],
        ignore_conflicts=True,
    )
    used = (
        CalibrationAllowance.objects.select_for_update()
        .filter(**where)
        .values_list("weight", flat=True)[0]
    )
    weight = max(0.0, min(1.0, float(settings.FEEDBACK_CALIBRATION_DAILY_WEIGHT) - used))
    if weight > 0:
        CalibrationAllowance.objects.filter(**where).update(weight=F("weight") + weight)
    return weight


def _add(usage: UsageRecord, weight: float, weighted_residual: float) -> None:
    assert usage.router_id is not None and usage.router_version is not None
    where = {"router_id": usage.router_id, "version": usage.router_version, "model": usage.model}
    RouterCalibration.objects.bulk_create(
        [RouterCalibration(organization_id=usage.organization_id, **where)],
        ignore_conflicts=True,
    )
    RouterCalibration.objects.filter(**where).update(
        weight=F("weight") + weight, residual=F("residual") + weighted_residual
    )


def _is_platform(usage: UsageRecord) -> bool:
    """``router/auto`` serves every organization: one tenant's feedback never calibrates it
    (many keys of one tenant would otherwise move it for all)."""
    from routing.routers import PLATFORM_ROUTER_SLUG

    return usage.router == f"router/{PLATFORM_ROUTER_SLUG}"


def calibration_contribution(
    *, usage: UsageRecord, score: float, contributor: str, previous: Feedback | None
) -> tuple[float, float]:
    """Fold a feedback ``score`` on ``usage`` into its router version's calibration, taking back
    what the feedback it replaces (``previous``) added; returns what it added (weight, weight x
    residual) for the feedback row. Call inside the transaction that writes the feedback."""
    if usage.router_id is None or usage.router_version is None or _is_platform(usage):
        return 0.0, 0.0
    if previous is not None and previous.calibration_weight:
        _add(usage, -previous.calibration_weight, -previous.calibration_residual)
    predicted = predicted_score(usage)
    if predicted is None:
        return 0.0, 0.0
    weight = _allowance_take(usage, contributor)
    if weight <= 0:
        return 0.0, 0.0
    weighted = weight * max(-1.0, min(1.0, score - predicted))
    _add(usage, weight, weighted)
    return weight, weighted


def calibration_summary(router_id: int, version: int) -> list[dict[str, Any]]:
    """Per calibrated model: its feedback weight and bias (the router page and API)."""
    rows = RouterCalibration.objects.filter(router_id=router_id, version=version).order_by("model")
    return [
        {"model": r.model, "weight": round(r.weight, 3), "bias": bias_value(r.residual, r.weight)}
        for r in rows
        if r.weight > 0
    ]
