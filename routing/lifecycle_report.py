"""The live report of a router's experiment, and the promotion rule that reads it.

A shadow is estimated off-policy on the decisions the active version served while the shadow
decided beside it (``routing.ope``: IPS and doubly robust, the served version's predicted scores
as the reward model). An A/B split is measured on-policy: each version's own traffic. Rewards
are feedback scores (``POST /api/v1/feedback``, 0..1) joined by generation id; costs are the
expected cost of each version's choice at catalog prices (known for every decision).

Promote-if-better (``Promotion.IF_BETTER``): after at least ``promotion_min_decisions`` decisions
with feedback, the candidate replaces the active version when the 95% interval of its score
difference lies above 0 and its expected cost is no higher (within
``ROUTER_PROMOTION_COST_TOLERANCE`` of the active version's).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from django.conf import settings

from billing.models import UsageDecision
from routing import ope
from routing.models import Feedback
from training import serving
from training.serving import Router

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Logged:
    """The experiment's decisions with feedback, as arrays."""

    served_version: np.ndarray
    served: list[str]
    greedy: list[str]
    shadow: list[str]
    propensity: np.ndarray
    reward: np.ndarray
    predicted: list[dict[str, list[float]]]
    logged: int  # decisions logged, with or without feedback


def _experiment(router: Router) -> tuple[str, int] | None:
    if router.shadow_version is not None:
        return "shadow", router.shadow_version.number
    if router.challenger_version is not None:
        return "ab", router.challenger_version.number
    return None


def _decisions(router: Router, kind: str, active: int, candidate: int) -> _Logged:
    rows = UsageDecision.objects.filter(router_id=router.pk)
    if kind == "shadow":
        rows = rows.filter(served_version=active, shadow_version=candidate)
    else:
        rows = rows.filter(served_version__in=(active, candidate))
    started = serving.experiment_started_at(router, version=candidate)
    if started is not None:
        rows = rows.filter(created_at__gte=started)
    rows = rows.order_by("-created_at")[: settings.ROUTER_OPE_MAX_DECISIONS]
    fields = ("generation_id", "served_version", "served_model", "greedy_model", "shadow_model")
    values = list(rows.values_list(*fields, "propensity", "predicted"))
    scores = dict(
        Feedback.objects.filter(
            organization_id=router.organization_id, usage_id__in=[v[0] for v in values]
        ).values_list("usage_id", "score")
    )
    kept = [v for v in values if v[0] in scores and v[5] > 0]
    return _Logged(
        served_version=np.array([v[1] for v in kept], dtype=np.int64),
        served=[v[2] for v in kept],
        greedy=[v[3] for v in kept],
        shadow=[v[4] for v in kept],
        propensity=np.array([v[5] for v in kept], dtype=np.float64),
        reward=np.array([scores[v[0]] for v in kept], dtype=np.float64),
        predicted=[orjson.loads(v[6]) for v in kept],
        logged=len(values),
    )


def _predicted(logged: _Logged, choices: list[str], index: int) -> np.ndarray:
    """r̂(x, choice) (``index`` 0) or the choice's expected cost (1), per decision; a model the
    served version did not rank is predicted at 0."""
    return np.array(
        [
            p.get(c, [0.0, 0.0])[index] or 0.0
            for p, c in zip(logged.predicted, choices, strict=True)
        ],
        dtype=np.float64,
    )


def _policy_terms(logged: _Logged, targets: list[str]) -> dict[str, np.ndarray]:
    matches = np.array([s == t for s, t in zip(logged.served, targets, strict=True)], dtype=bool)
    reward_model = np.clip(_predicted(logged, targets, 0), 0.0, 1.0)
    served_model = np.clip(_predicted(logged, logged.served, 0), 0.0, 1.0)
    return {
        "ips": ope.ips_terms(matches, logged.propensity, logged.reward),
        "dr": ope.dr_terms(matches, logged.propensity, logged.reward, reward_model, served_model),
        "cost": _predicted(logged, targets, 1),
    }


def _version_entry(
    number: int, role: str, terms: dict[str, np.ndarray], score: str
) -> dict[str, Any]:
    return {
        "version": number,
        "role": role,
        "score": ope.mean_interval(terms[score]).as_dict(),
        "ips": ope.mean_interval(terms["ips"]).as_dict() if "ips" in terms else None,
        "cost": ope.mean_interval(terms["cost"]).as_dict(),
        "decisions": len(terms["cost"]),
    }


def _shadow_report(logged: _Logged, active: int, shadow: int) -> dict[str, Any]:
    baseline, candidate = _policy_terms(logged, logged.greedy), _policy_terms(logged, logged.shadow)
    return {
        "method": "doubly_robust",
        "versions": [
            _version_entry(active, "active", baseline, "dr"),
            _version_entry(shadow, "shadow", candidate, "dr"),
        ],
        "difference": {
            "score": ope.paired_difference(baseline["dr"], candidate["dr"]).as_dict(),
            "ips": ope.paired_difference(baseline["ips"], candidate["ips"]).as_dict(),
            "cost": ope.paired_difference(baseline["cost"], candidate["cost"]).as_dict(),
        },
    }


def _ab_report(logged: _Logged, active: int, challenger: int) -> dict[str, Any]:
    costs = _predicted(logged, logged.served, 1)
    arms = {}
    for number in (active, challenger):
        mine = logged.served_version == number
        arms[number] = {"on_policy": logged.reward[mine], "cost": costs[mine]}
    return {
        "method": "on_policy",
        "versions": [
            _version_entry(active, "active", arms[active], "on_policy"),
            _version_entry(challenger, "challenger", arms[challenger], "on_policy"),
        ],
        "difference": {
            "score": ope.independent_difference(
                arms[active]["on_policy"], arms[challenger]["on_policy"]
            ).as_dict(),
            "cost": ope.independent_difference(arms[active]["cost"], arms[challenger]["cost"])
            .as_dict(),
        },
    }  # fmt: skip


def _verdict(router: Router, report: dict[str, Any]) -> dict[str, Any]:
    """Whether the promotion rule would promote now, and why (or why not)."""
    n = sum(v["decisions"] for v in report["versions"]) if report["method"] == "on_policy" else (
        report["versions"][0]["decisions"]
    )  # fmt: skip
    score, cost = report["difference"]["score"], report["difference"]["cost"]
    active_cost = report["versions"][0]["cost"]["estimate"]
    allowed = settings.ROUTER_PROMOTION_COST_TOLERANCE * abs(active_cost)
    if n < router.promotion_min_decisions:
        return {"better": False, "reason": f"{n} of {router.promotion_min_decisions} decisions"}
    if not score["low"] > 0:
        return {"better": False, "reason": "score not better with 95% confidence"}
    if math.isnan(cost["estimate"]) or cost["estimate"] > allowed:
        return {"better": False, "reason": "costs more than the active version"}
    return {"better": True, "reason": "better with 95% confidence at equal or lower cost"}


def experiment_report(router: Router) -> dict[str, Any]:
    """The report of ``router``'s running experiment (API.md-style JSON; ``experiment`` None
    when it runs none)."""
    experiment = _experiment(router)
    active = router.active_version.number if router.active_version is not None else None
    base: dict[str, Any] = {
        "router": router.slug,
        "active_version": active,
        "exploration_rate": router.exploration_rate,
        "promotion": router.promotion,
        "promotion_min_decisions": router.promotion_min_decisions,
        "experiment": None,
    }
    if experiment is None or active is None:
        return base
    kind, candidate = experiment
    logged = _decisions(router, kind, active, candidate)
    build = _shadow_report if kind == "shadow" else _ab_report
    report = base | {
        "experiment": kind,
        "candidate_version": candidate,
        "share": router.shadow_share if kind == "shadow" else router.challenger_share,
        "decisions_logged": logged.logged,
        "decisions_with_feedback": len(logged.served),
        **build(logged, active, candidate),
    }
    report["verdict"] = _verdict(router, report)
    return report


def experiment_report_json(router: Router) -> dict[str, Any]:
    """``experiment_report`` as the API answers it: an estimate over no decisions (NaN) and an
    interval over fewer than two (±inf) are null, which JSON can carry and NaN is not."""
    return dict(_finite_or_null(experiment_report(router)))


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(item) for item in value]
    return value


def routers_promote_if_better() -> list[int]:
    """Apply the promotion rule to the routers that asked for it (at most
    ``ROUTER_PROMOTION_MAX_ROUTERS`` per run); returns the ids of the routers promoted."""
    promoted = []
    for router in serving.promotion_candidates(settings.ROUTER_PROMOTION_MAX_ROUTERS):
        try:
            report = experiment_report(router)
            if report["experiment"] is None or not report["verdict"]["better"]:
                continue
            evidence = {k: report[k] for k in ("experiment", "method", "difference", "verdict")}
            evidence["versions"] = report["versions"]
            serving.version_promote(
                router=router, number=report["candidate_version"], evidence=evidence
            )
            promoted.append(router.pk)
        except Exception:
            logger.exception("promotion rule of router %s failed; next run retries", router.pk)
    return promoted
