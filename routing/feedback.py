"""Feedback on served requests: recording it, and turning it into a retrained router.

Routing owns ``Feedback``: ``POST /api/v1/feedback`` writes it and retraining the router that
served the requests reads it. Training gets it as plain data (``training.serving``), joined to
the router by the id the usage record names (``UsageRecord.router_id``), never by its slug.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Case, JSONField, QuerySet, TextField, Value, When
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Coalesce, Length

from accounts.key_lineage import key_answers_for
from accounts.models import ApiKey, KeyScope
from billing.models import UsageGeneration, UsageRecord
from billing.selectors import generation_missing
from routerhub.domain import Conflict, InvalidInput
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
    served_by: int | None = None,
) -> Feedback:
    """Store (or replace) the feedback on a served request of this organization, and fold it into
    the serving router version's online calibration (``routing.calibration``) with the weight
    its sender (the key, else the dashboard user) has left today.

    ``served_by`` (an inference key's ``TenantAPIView.served_by``): only a request one of those
    keys sent may be rated (another is a 404, as an unknown id), and feedback a person gave
    (no key) or a management key gave is not replaced (409)."""
    # Locked: feedback on one generation is written one at a time (the first creates the row).
    # Feedback points at the generation's guard row; the record (partitioned by month) is read
    # in its own month's partition.
    guard = (
        UsageGeneration.objects.select_for_update()
        .filter(organization_id=organization_id, generation_id=generation_id)
        .first()
    )
    records = UsageRecord.objects.filter(generation_id=generation_id)
    usage = None if guard is None else records.filter(created_at=guard.created_at).first()
    if usage is not None and served_by is not None and not key_answers_for(served_by, usage.key_id):
        usage = None  # another key's request: a 404, as an unknown id
    if usage is None:
        raise generation_missing(
            organization_id=organization_id,
            generation_id=generation_id,
            param="generation_id",
            served_by=served_by,
            action="rate",
        )
    previous = Feedback.objects.filter(usage=guard).first()
    if served_by is not None and previous is not None:
        subject = generation_id if previous.key_id else f"{generation_id} from the dashboard"
        feedback_replace_check(previous.key_id, subject, param="generation_id")
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


def feedback_replace_check(given_by_key_id: int | None, subject: str, *, param: str) -> None:
    """An inference key does not replace feedback a person (``given_by_key_id`` None) or a
    management key gave (409, naming ``subject``): the organization's word stands over a key's.
    Native feedback's rule, and Not Diamond's session feedback's (``routing.notdiamond``)."""
    if given_by_key_id is None:
        given_by = "A person gave feedback on {}"
    elif ApiKey.objects.filter(pk=given_by_key_id, scope=KeyScope.MANAGE).exists():
        given_by = "A management key gave feedback on {}"
    else:
        return
    raise Conflict(
        f"{given_by.format(subject)}; an inference key does not replace it.",
        param=param,
    )


def _router_feedback_rows(router: serving.Router, before: datetime | None) -> QuerySet[Feedback]:
    """The organization's feedback on requests this router served with one of its candidates and
    a kept prompt no longer than a dataset cell may be, newest first."""
    served = (
        UsageRecord.objects.filter(
            organization_id=router.organization_id,
            router_id=router.pk,
            model__in=router.candidates,
        )
        .exclude(prompt="")
        .annotate(prompt_chars=Length("prompt"))
        .filter(prompt_chars__lte=int(settings.DATASET_MAX_CELL_CHARS))
        .values("generation_id")
    )
    rows = Feedback.objects.filter(organization_id=router.organization_id, usage_id__in=served)
    if before is not None:
        rows = rows.filter(created_at__lte=before)
    return rows.order_by("-created_at", "-pk")


# The task the request named (``router.task``), as its trace kept it (every routed request's,
# where the decision log keeps it only under a lifecycle policy); "" for none. Read in the
# database: only the hint crosses the wire, never the trace (up to 20k characters a row), and only
# a trace naming one is parsed as JSON (most requests name none).
_TASK_HINT = Case(
    When(
        trace__contains='"task_hint"',
        then=Coalesce(
            KeyTextTransform(
                "task",
                KeyTransform("task_hint", KeyTransform("routing", Cast("trace", JSONField()))),
            ),
            Value(""),
        ),
    ),
    default=Value(""),
    output_field=TextField(),
)


def router_feedback(
    router: serving.Router, *, before: datetime | None = None, limit: int | None = None
) -> list[serving.FeedbackExample]:
    """The router's newest feedback (``_router_feedback_rows``) up to ``limit`` rows
    (``FEEDBACK_RETRAIN_MAX_ROWS`` unless given): ids and scores first, then the prompts a
    chunk at a time."""
    limit = int(settings.FEEDBACK_RETRAIN_MAX_ROWS) if limit is None else limit
    scores = list(_router_feedback_rows(router, before).values_list("usage_id", "score")[:limit])
    examples = []
    # Feedback points at the generation's guard row; the records (partitioned by month: no
    # foreign key reaches them) are looked up by those generation ids, a chunk at a time.
    for start in range(0, len(scores), _CHUNK):
        chunk = dict(scores[start : start + _CHUNK])
        found = (
            UsageRecord.objects.filter(
                organization_id=router.organization_id,
                generation_id__in=list(chunk),
                router_id=router.pk,
                model__in=router.candidates,
            )
            .annotate(task_named=_TASK_HINT)
            .values_list("generation_id", "prompt", "model", "cost", "task_named")
        )
        records = {generation_id: (p, m, c, t) for generation_id, p, m, c, t in found}
        examples += [
            serving.FeedbackExample(prompt=p, model=m, score=score, cost=float(c), task=task)
            for generation_id, score in chunk.items()
            if generation_id in records
            for p, m, c, task in [records[generation_id]]
        ]
    return examples


def feedback_retrain(*, router: serving.Router) -> serving.FeedbackRetrain:
    """Queue a retrain of ``router`` from its feedback: cheap checks, the rows it will use
    counted (bounded), its dataset and run recorded; a task on the training queue builds the
    dataset and starts the run (``feedback_retrain_build``)."""
    serving.feedback_retrain_check(router)
    rows = _router_feedback_rows(router, None)
    if not rows.exists():
        raise InvalidInput(
            f"No feedback yet on requests served by router/{router.slug} with their prompts; "
            "send POST /api/v1/feedback for some generations first."
        )
    count = rows.values("pk")[: int(settings.FEEDBACK_RETRAIN_MAX_ROWS)].count()
    with transaction.atomic():
        started = serving.feedback_retrain_queue(router=router, feedback_rows=count)
        transaction.on_commit(partial(_build_queue, started.run.pk))
    return started


def _build_queue(run_id: int) -> None:
    from routing import tasks

    tasks.feedback_retrain_build.delay(run_id)


def feedback_retrain_build(run_id: int) -> str:
    """The worker's part: build the retrain's dataset from the feedback given before it was
    queued, and queue its training (``training.feedback_jobs``)."""
    return serving.feedback_build(
        run_id=run_id, read=lambda router, before: router_feedback(router, before=before)
    )
