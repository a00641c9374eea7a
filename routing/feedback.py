"""Feedback on served requests: recording it, and turning it into a retrained router.

Routing owns ``Feedback``: ``POST /api/v1/feedback`` writes it and retraining the router that
served the requests reads it. Training gets it as plain data (``training.serving``), joined to
the router by the id the usage record names (``UsageRecord.router_id``), never by its slug.
"""

from __future__ import annotations

from decimal import Decimal

from billing.models import UsageGeneration, UsageRecord
from routerhub.domain import NotFound
from routing.models import Feedback
from training import serving

_CHUNK = 1000


def feedback_record(
    *, organization_id: int, generation_id: str, score: float, comment: str = "", key_id: int | None
) -> Feedback:
    """Store (or replace) the feedback on a served request of this organization."""
    usage = UsageGeneration.objects.filter(
        organization_id=organization_id, generation_id=generation_id
    ).first()
    if usage is None:
        raise NotFound(
            f"No generation {generation_id} in this organization.", param="generation_id"
        )
    feedback, _ = Feedback.objects.update_or_create(
        usage=usage,
        defaults={
            "organization_id": organization_id,
            "score": score,
            "comment": comment,
            "key_id": key_id,
        },
    )
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
