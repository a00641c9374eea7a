"""Drift: how far a router's live prompts have moved from the prompts it was trained on.

Measured on the router's own features (``Featurizer.transform``'s dense vector: the TF-IDF SVD
projection and the text statistics), one dimension at a time. At training time each dimension's
deciles over (up to) ``REFERENCE_ROWS`` training prompts become bin edges, and the share of
training prompts in each bin is kept (``RouterVersion.drift_reference``). A check bins the live
vectors sampled since the previous check (``training.drift_samples``) the same way and scores
each dimension with the population stability index, PSI = Σ (live - train) · ln(live / train);
the router's score is the mean over dimensions. With n live samples and 10 bins an unchanged
distribution scores about 9 / n per dimension from sampling noise alone (PSI is close to
Pearson's χ² / n: 0.045 at n = 200, plus as much again from a small training set); the usual
reading of PSI is < 0.1 stable, 0.1-0.25 moderate, > 0.25 a shift, hence the default
``DRIFT_THRESHOLD`` = 0.25. The first check above the threshold alerts (``router.drift`` webhook
and an email to the organization's admins); later checks above it belong to the same episode
and stay quiet until one falls back below (or a new version is activated).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string

from accounts.models import Membership, Role
from routerhub.text import one_line
from training.drift_samples import drift_samples_take
from training.learner.featurizer import Featurizer
from training.models import Router, RouterDriftCheck, RouterVersion
from webhooks.models import WebhookEvent
from webhooks.services import webhook_event_emit

logger = logging.getLogger(__name__)

REFERENCE_ROWS = 2000
QUANTILES = np.linspace(0.1, 0.9, 9)
FLOOR = 1e-4  # share given to an empty bin, so the logarithm stays finite


def drift_reference_build(featurizer: Featurizer, prompts: Sequence[str]) -> dict[str, Any]:
    """Bin edges and proportions per feature dimension of the training prompts."""
    if len(prompts) > REFERENCE_ROWS:
        rows = np.random.default_rng(0).choice(len(prompts), REFERENCE_ROWS, replace=False)
        prompts = [prompts[i] for i in sorted(rows)]
    _, dense = featurizer.transform_many(list(prompts))
    edges, proportions = [], []
    for column in np.asarray(dense, dtype=np.float32).T:
        cuts = np.unique(np.quantile(column, QUANTILES))
        counts = np.bincount(np.searchsorted(cuts, column, side="right"), minlength=len(cuts) + 1)
        edges.append([float(c) for c in cuts])
        proportions.append([round(float(c) / len(column), 6) for c in counts])
    return {"rows": len(prompts), "edges": edges, "proportions": proportions}


def drift_score(reference: dict[str, Any], live: np.ndarray) -> float:
    """Mean PSI over dimensions of ``live`` (n, d) against the reference's bins."""
    scores = []
    for column, cuts, expected in zip(
        live.T, reference["edges"], reference["proportions"], strict=True
    ):
        counts = np.bincount(
            np.searchsorted(np.asarray(cuts, np.float32), column, side="right"),
            minlength=len(expected),
        )
        actual = np.maximum(counts / len(column), FLOOR)
        base = np.maximum(np.asarray(expected, dtype=np.float64), FLOOR)
        scores.append(float(np.sum((actual - base) * np.log(actual / base))))
    return float(np.mean(scores)) if scores else 0.0


def _episode_open(router: Router, version: RouterVersion) -> bool:
    """Whether the latest check of this version was above its threshold (alert already sent)."""
    latest = (
        RouterDriftCheck.objects.filter(router=router, version=version)
        .order_by("-checked_at", "-pk")
        .first()
    )
    return latest is not None and latest.above_threshold


def drift_check_router(router: Router) -> RouterDriftCheck | None:
    """Score the active version over the live samples gathered since the last check; None when
    there is no reference or not yet ``DRIFT_MIN_SAMPLES`` samples."""
    version = router.active_version
    if version is None or not version.drift_reference:
        return None
    live = drift_samples_take(version.pk, minimum=settings.DRIFT_MIN_SAMPLES)
    if live is None or live.shape[1] != len(version.drift_reference["edges"]):
        return None
    score, threshold = drift_score(version.drift_reference, live), settings.DRIFT_THRESHOLD
    alert = score > threshold and not _episode_open(router, version)
    check = RouterDriftCheck.objects.create(
        organization_id=router.organization_id,
        router=router,
        version=version,
        score=round(score, 6),
        threshold=threshold,
        samples=len(live),
        alerted=alert,
    )
    if alert:
        drift_alert_send(check)
    return check


def drift_check_all() -> int:
    """Check every router with an active version; returns how many were scored."""
    checked = 0
    routers = Router.objects.filter(active_version__isnull=False).select_related(
        "active_version", "organization"
    )
    for router in routers.iterator():
        try:
            checked += drift_check_router(router) is not None
        except Exception:
            logger.exception("drift check of router %s failed", router.pk)
    return checked


def _router_url(router: Router) -> str:
    return f"{settings.SITE_URL.rstrip('/')}/dashboard/routers/{router.slug}/"


def drift_alert_send(check: RouterDriftCheck) -> None:
    """The ``router.drift`` webhook and one email per admin or owner of the organization."""
    router = check.router
    data = {
        "router": router.slug,
        "version": check.version.number,
        "score": check.score,
        "threshold": check.threshold,
        "samples": check.samples,
        "checked_at": check.checked_at.isoformat(),
        "router_url": _router_url(router),
        "suggestion": "retrain with recent feedback: POST "
        f"/api/v1/routers/{router.slug}/retrain-from-feedback",
    }
    webhook_event_emit(router.organization_id, WebhookEvent.ROUTER_DRIFT, data)
    admins = Membership.objects.filter(
        organization_id=router.organization_id, role__in=[Role.ADMIN, Role.OWNER]
    ).select_related("user")
    subject = (
        f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}Router {one_line(router.name)} drifted from "
        "its training prompts"
    )
    body = render_to_string("training/drift_alert_email.txt", data | {"name": router.name})
    for email in sorted({m.user.email for m in admins if m.user.email}):
        try:  # one message per person: addresses are not shared, a bad one fails alone
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [email])
        except Exception:
            logger.exception("drift alert email for router %s failed", router.pk)
