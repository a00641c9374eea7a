"""Feedback on served requests: recording it, and turning it into a retrained router.

Routing owns ``Feedback``: ``POST /api/v1/feedback`` writes it and retraining the router that
served the requests reads it. Training gets it as plain data (``training.serving``), joined to
the router by the id the usage record names (``UsageRecord.router_id``), never by its slug.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from billing.models import UsageGeneration, UsageRecord
from billing.selectors import generation_missing
from routing.calibration import calibration_contribution
from routing.models import Feedback
from training import serving

_CHUNK = 1000


@transaction.atomic
def feedback_record(
    *,
    organization_id: int,
    generation_id: str,
    score: float,
    comment: str = "",
    key_id: int | None,
    user_id: int | None = None,
) -> Feedback:
    """Store (or replace) the feedback on a served request of this organization, and fold it into
    the serving router version's online calibration (``routing.calibration``) with the weight
    its sender (the key, else the dashboard user) has left today."""
    # Locked: feedback on one generation is written one at a time (the first creates the row).
    # Feedback points at the generation's guard row; the record (partitioned by month) is read
    # in its own month's partition.
    guard = (
        UsageGeneration.objects.select_for_update()
        .filter(organization_id=organization_id, generation_id=generation_id)
        .first()
    )
    usage = (
        None
        if guard is None
        else UsageRecord.objects.filter(
            generation_id=generation_id, created_at=guard.created_at
        ).first()
    )
    if usage is None:
        raise generation_missing(
            organization_id=organization_id, generation_id=generation_id, param="generation_id"
        )
    previous = Feedback.objects.filter(usage=guard).first()
    weight, weighted = calibration_contribution(
        usage=usage,
        score=score,
        contributor=f"key:{key_id}" if key_id is not None else f"user:{user_id}",
        previous=previous,
    )
    feedback = previous or Feedback(usage=guard)
    feedback.organization_id, feedback.score, feedback.comment = organization_id, score, comment
    feedback.key_id = key_id
    feedback.calibration_weight, feedback.calibration_residual = weight, weighted
    feedback.save()
    return feedback


def router_feedback(router: serving.Router) -> list[serving.FeedbackExample]:
    """Feedback with a kept prompt on requests the router served with one of its candidates."""
    # Feedback points at the generation's guard row; the records (partitioned by month: no
    # foreign key reaches them) are looked up by those generation ids, a chunk at a time.
    scores = list(
        Feedback.objects.filter(organization_id=router.organization_id)
        .order_by("created_at")
        .values_list("usage_id", "score")
    )
    records: dict[str, tuple[str, str, Decimal]] = {}
    for start in range(0, len(scores), _CHUNK):
        chunk = [generation_id for generation_id, _ in scores[start : start + _CHUNK]]
        found = (
            UsageRecord.objects.filter(
                organization_id=router.organization_id,
                generation_id__in=chunk,
                router_id=router.pk,
                model__in=router.candidates,
            )
            .exclude(prompt="")
            .values_list("generation_id", "prompt", "model", "cost")
        )
        for generation_id, prompt, model, cost in found:
            records[generation_id] = (prompt, model, cost)
    return [
        serving.FeedbackExample(prompt=prompt, model=model, score=score, cost=float(cost))
        for generation_id, score in scores
        if generation_id in records
        for prompt, model, cost in [records[generation_id]]
    ]


def feedback_retrain(*, router: serving.Router) -> serving.FeedbackRetrain:
    """Build the dataset version from the router's feedback and queue a training run on it."""
    return serving.feedback_retrain(router=router, feedback=router_feedback(router))
