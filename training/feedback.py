"""Feedback → a new dataset version → a retrained router, in one call.

Feedback scores one model per prompt (the one that served it). The new dataset is the active
version's training data plus one row per prompt with feedback: the served model's column holds
the feedback, the other candidates' columns hold the active version's predictions for that
prompt (pseudo-labels), so the new version learns from the correction without mistaking "not
tried" for "wrong". Needs prompt logging: without stored prompts there is nothing to learn from.

Feedback arrives as plain data (``FeedbackExample``): routing owns the feedback and usage rows
and selects them; training only turns examples into rows and a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from django.utils import timezone

from routerhub.domain import InvalidInput
from training import services
from training.execution import load_parsed
from training.models import Router
from training.predictor import predictor_for_version
from training.serving import FeedbackExample, FeedbackRetrain


def _score(value: float, binary: bool) -> float:
    return float(value >= 0.5) if binary else float(value)


def _feedback_check(router: Router, feedback: Sequence[FeedbackExample]) -> None:
    version = router.active_version
    if version is None or version.dataset is None:
        raise InvalidInput("Train the router once before retraining it from feedback.")
    if not router.organization.prompt_logging:
        raise InvalidInput(
            "Turn on prompt logging (Organization settings) first: feedback can only become "
            "training data for requests whose prompts were kept."
        )
    if not feedback:
        raise InvalidInput(
            f"No feedback yet on requests served by router/{router.slug} with their prompts; "
            "send POST /api/v1/feedback for some generations first."
        )


def feedback_dataset_rows(
    router: Router, feedback: Sequence[FeedbackExample]
) -> list[dict[str, Any]]:
    """JSON rows (Not Diamond layout) of the active version's data plus feedback rows."""
    _feedback_check(router, feedback)
    version = router.active_version
    assert version is not None and version.dataset is not None
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
        predicted = {r.model: r.score for r in predictor.rank(item.prompt, 0.0, candidates)}
        row = {"prompt": item.prompt}
        for k, model in enumerate(candidates):
            value = item.score if model == item.model else predicted[model]
            row[f"{model}/score"] = _score(value, binary[model])
            if mean_costs is not None:
                row[f"{model}/cost"] = item.cost if model == item.model else float(mean_costs[k])
        rows.append(row)
    return rows


def feedback_retrain(*, router: Router, feedback: Sequence[FeedbackExample]) -> FeedbackRetrain:
    """Build the dataset version, validate it now, and queue a training run on it."""
    rows = feedback_dataset_rows(router, feedback)
    content = b"\n".join(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) for row in rows)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    name = f"{router.slug}-feedback-{stamp}.jsonl"
    previous = router.active_version
    assert previous is not None and previous.dataset is not None
    try:
        validated = services.dataset_from_bytes(
            organization=router.organization,
            name=name,
            content=content,
            columns=None,
            maximize=previous.dataset.maximize,
        )
    except services.DatasetNotReady as exc:
        raise InvalidInput(f"The feedback dataset did not validate: {exc.problems(3)}") from None
    run = services.training_run_start(router=router, dataset=validated)
    return FeedbackRetrain(validated, run, len(feedback))
