"""Feedback → a new dataset version → a retrained router, in one call.

Feedback scores one model per prompt (the one that served it). The new dataset is the active
version's training data plus one row per prompt with feedback: the served model's column holds
the feedback, the other candidates' columns hold the active version's predictions for that
prompt (pseudo-labels), so the new version learns from the correction without mistaking "not
tried" for "wrong". Needs prompt logging: without stored prompts there is nothing to learn from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone

from billing.models import Feedback
from routerhub.errors import BadRequest
from training import services as training_services
from training.execution import load_parsed
from training.models import Dataset, DatasetStatus, Router, TrainingRun
from training.predictor import predictor_for_version


@dataclass(frozen=True)
class FeedbackRetrain:
    dataset: Dataset
    run: TrainingRun
    feedback_rows: int


def _feedback_rows(router: Router) -> list[Feedback]:
    return list(
        Feedback.objects.filter(
            organization_id=router.organization_id,
            usage__router=f"router/{router.slug}",
            usage__model__in=router.candidates,
        )
        .exclude(usage__prompt="")
        .select_related("usage")
        .order_by("created_at")
    )


def _score(value: float, binary: bool) -> float:
    return float(value >= 0.5) if binary else float(value)


def feedback_dataset_rows(router: Router) -> tuple[list[dict[str, Any]], int]:
    """JSON rows (Not Diamond layout) of the active version's data plus feedback rows."""
    version = router.active_version
    if version is None or version.dataset is None:
        raise BadRequest("Train the router once before retraining it from feedback.")
    if not router.organization.prompt_logging:
        raise BadRequest(
            "Turn on prompt logging (Organization settings) first: feedback can only become "
            "training data for requests whose prompts were kept."
        )
    feedback = _feedback_rows(router)
    if not feedback:
        raise BadRequest(
            f"No feedback yet on requests served by router/{router.slug} with their prompts; "
            "send POST /api/v1/feedback for some generations first."
        )
    base = load_parsed(version.dataset)
    candidates = [m for m in router.candidates if m in base.models]
    columns = [base.models.index(m) for m in candidates]
    binary = {m: base.binary[j] for m, j in zip(candidates, columns, strict=True)}
    mean_costs = base.costs[:, columns].mean(axis=0) if base.costs is not None else None
    rows: list[dict[str, Any]] = []
    for i, prompt in enumerate(base.prompts):
        row: dict[str, Any] = {"prompt": prompt}
        for model, j in zip(candidates, columns, strict=True):
            row[f"{model}/score"] = float(base.scores[i, j])
            if base.costs is not None:
                row[f"{model}/cost"] = float(base.costs[i, j])
        rows.append(row)
    predictor = predictor_for_version(version)
    for item in feedback:
        usage = item.usage
        predicted = {r.model: r.score for r in predictor.rank(usage.prompt, 0.0, candidates)}
        row = {"prompt": usage.prompt}
        for k, model in enumerate(candidates):
            value = item.score if model == usage.model else predicted[model]
            row[f"{model}/score"] = _score(value, binary[model])
            if mean_costs is not None:
                cost = float(usage.cost) if model == usage.model else float(mean_costs[k])
                row[f"{model}/cost"] = cost
        rows.append(row)
    return rows, len(feedback)


def feedback_retrain(*, router: Router) -> FeedbackRetrain:
    """Build the dataset version, validate it now, and queue a training run on it."""
    rows, feedback_count = feedback_dataset_rows(router)
    content = b"\n".join(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) for row in rows)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    name = f"{router.slug}-feedback-{stamp}.jsonl"
    previous = router.active_version
    assert previous is not None and previous.dataset is not None
    with transaction.atomic():
        dataset = training_services.dataset_create(
            organization=router.organization,
            name=name,
            upload=SimpleUploadedFile(name, content),
            columns=None,
            maximize=previous.dataset.maximize,
        )
    validated = training_services.dataset_validate(dataset_id=dataset.pk) or dataset
    validated.refresh_from_db()
    if validated.status != DatasetStatus.READY:
        problems = "; ".join(e["message"] for e in validated.errors[:3])
        raise BadRequest(f"The feedback dataset did not validate: {problems}")
    run = training_services.training_run_start(router=router, dataset=validated)
    return FeedbackRetrain(validated, run, feedback_count)
