"""Routing's one entry into training: what serving a router, retraining it from feedback and the
platform-router command need, and nothing else.

Light at import (models and plain helpers only) so gateway workers start without LightGBM or
pandas; the predictor, services and feedback modules load on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction

from accounts.models import Organization
from training.cells import prompt_text
from training.charts import cost_quality_svg
from training.models import Dataset, Router, RouterEvent, RouterVersion, TrainingRun
from training.prices import MAX_PRICE, price_value
from training.tokens import (
    CHARS_PER_TOKEN,
    DEFAULT_OUTPUT_TOKENS,
    billed_tokens,
    estimated_tokens,
    text_tokens,
    tokens_from_chars,
)

if TYPE_CHECKING:
    import numpy as np

    from training.predictor import Predictor
    from training.routellm_rates import Pair as Pair

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_OUTPUT_TOKENS",
    "MAX_PRICE",
    "FeedbackExample",
    "FeedbackRetrain",
    "Router",
    "RouterEvent",
    "RouterVersion",
    "TrainingRun",
    "UploadNotReady",
    "billed_tokens",
    "calibration_rates",
    "cascade_report",
    "cost_quality_svg",
    "dataset_from_file",
    "dataset_from_upload",
    "dataset_prompts",
    "drift_sample_observe",
    "estimated_tokens",
    "experiment_started_at",
    "feedback_build",
    "feedback_retrain_check",
    "feedback_retrain_queue",
    "lifecycle_input",
    "predictor_for_version",
    "predictor_is_loaded",
    "price_value",
    "promotion_candidates",
    "prompt_text",
    "router_create",
    "router_lifecycle_update",
    "router_rollback",
    "router_train_now",
    "strong_win_rates",
    "text_tokens",
    "tokens_from_chars",
    "training_start",
    "version_pair",
    "version_promote",
]


@dataclass(frozen=True)
class FeedbackExample:
    """One served request with feedback: its prompt, the model that answered, what it cost."""

    prompt: str
    model: str
    score: float  # 0 (bad) … 1 (good)
    cost: float  # USD
    task: str = ""  # the request's task hint (``router.task``), "" when it named none


@dataclass(frozen=True)
class FeedbackRetrain:
    """A queued retrain: its dataset (built on a worker), its run, and the feedback rows it will
    use as counted when it was queued (at most ``FEEDBACK_RETRAIN_MAX_ROWS``)."""

    dataset: Dataset
    run: TrainingRun
    feedback_rows: int


def predictor_for_version(version: RouterVersion, *, warmup: bool = False) -> Predictor:
    """The version's predictor, loaded once per process (reads storage the first time)."""
    from training import predictor

    return predictor.predictor_for_version(version, warmup=warmup)


def version_pair(version: RouterVersion) -> Pair:
    """RouteLLM's strong and weak model of ``version`` (``training.routellm_rates``)."""
    from training import routellm_rates

    return routellm_rates.version_pair(version)


def strong_win_rates(version: RouterVersion, pair: Pair, prompts: list[str]) -> np.ndarray:
    """The strong-win rate (0..1) of each prompt under ``version``."""
    from training import routellm_rates

    return routellm_rates.strong_win_rates(version, pair, prompts)


def calibration_rates(version_id: int, checksum: str) -> tuple[Pair, np.ndarray]:
    """A version's RouteLLM pair and sorted strong-win rates, stored once per version."""
    from training import routellm_rates

    return routellm_rates.calibration_rates(version_id, checksum)


def predictor_is_loaded(version: RouterVersion) -> bool:
    from training import predictor

    return predictor.predictor_is_loaded(version)


def drift_sample_observe(version: RouterVersion, prompt: str) -> None:
    """Maybe keep a routed prompt for the drift check: no I/O on the caller's path
    (training/drift_samples.py)."""
    from training import drift_samples

    drift_samples.drift_sample_observe(version, prompt)


def feedback_retrain_check(router: Router) -> None:
    """``InvalidInput`` when ``router`` cannot be retrained from feedback (cheap: no data read)."""
    from training import feedback as training_feedback

    training_feedback.feedback_retrain_check(router)


def feedback_retrain_queue(*, router: Router, feedback_rows: int) -> FeedbackRetrain:
    """Record a retrain's dataset (built later) and its queued run, stage ``building_dataset``
    (``training.feedback_jobs``); ``Conflict`` while the router has a run queued or running."""
    from training import feedback_jobs

    return feedback_jobs.feedback_retrain_queue(router=router, feedback_rows=feedback_rows)


def feedback_build(
    *, run_id: int, read: Callable[[Router, datetime], Sequence[FeedbackExample]]
) -> str:
    """Build a queued retrain's dataset from the feedback ``read`` gives (the router, feedback
    up to the run's creation) and queue its training; failures end the run with the reason."""
    from training import feedback_jobs

    return feedback_jobs.feedback_build(run_id, read)


def cascade_report(*, version: RouterVersion, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """A cascade of ``steps`` replayed on ``version``'s held-out rows for a sweep of pre-call
    gate thresholds, beside the version's own curve (``training.cascade_report``)."""
    from training import cascade_report as report

    return report.cascade_report(version=version, steps=steps)


def dataset_prompts(dataset: Dataset) -> list[str]:
    """The prompts of a ready dataset, in its row order (reads its parsed file from storage)."""
    from training.run_data import load_parsed

    return list(load_parsed(dataset).prompts)


def dataset_from_file(
    *, organization: Organization, name: str, content: bytes, columns: Any, maximize: bool
) -> Dataset:
    """A ready dataset from a file's bytes, validated here; ``ValueError`` saying why not."""
    from training import services

    try:
        return services.dataset_from_bytes(
            organization=organization,
            name=name,
            content=content,
            columns=columns,
            maximize=maximize,
        )
    except services.DatasetNotReady as exc:
        raise ValueError(f"{name} is {exc.dataset.status}: {exc.problems(5)}") from None


def router_create(
    *, organization: Organization, slug: str, name: str, candidates: list[str]
) -> Router:
    """A new router of ``organization`` (untrained; ``InvalidInput`` when the slug is taken)."""
    from training import services

    return services.router_create(
        organization=organization, slug=slug, name=name, candidates=candidates
    )


class UploadNotReady(ValueError):
    """An uploaded dataset that did not validate; ``errors`` lists its problems (API.md's shape)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(error["message"]) for error in errors[:3]))


def dataset_from_upload(
    *, organization: Organization, upload: Any, name: str, prompt_column: str, maximize: bool
) -> Dataset:
    """Store ``upload`` as a dataset of ``organization`` and validate it in this process: the
    ready dataset, or ``UploadNotReady`` (the dataset stays, failed, with its errors)."""
    from training import services
    from training.models import DatasetStatus

    # Not inside a transaction: the quota's lock is released before the file is stored.
    dataset = services.dataset_create(
        organization=organization,
        name=name,
        upload=upload,
        columns={"prompt": prompt_column},
        maximize=maximize,
    )
    validated = services.dataset_validate(dataset_id=dataset.pk) or dataset
    validated.refresh_from_db()
    if validated.status != DatasetStatus.READY:
        raise UploadNotReady(validated.errors)
    return validated


def training_start(
    *, router: Router, dataset: Dataset, options: dict[str, Any] | None = None
) -> TrainingRun:
    """Queue the router's training on a ready dataset (``InvalidInput`` when it or ``options``
    does not fit)."""
    from training import services

    return services.training_run_start(router=router, dataset=dataset, options=options)


def router_train_now(
    *,
    organization: Organization,
    slug: str,
    name: str,
    dataset: Dataset,
    options: dict[str, Any],
) -> RouterVersion:
    """Train the router ``slug`` (created if missing) in this process, not on a worker, and
    activate the result: for an operator command that should end with its answer. ``ValueError``
    when training fails."""
    from training import execution, services
    from training.models import RunStatus

    router = Router.objects.filter(organization=organization, slug=slug).first()
    if router is None:
        router = services.router_create(
            organization=organization,
            slug=slug,
            name=name,
            candidates=dataset.model_ids,
            auto_activate=True,
        )
    with transaction.atomic():
        run = services.training_run_start(router=router, dataset=dataset, options=options)
    status = execution.training_run_execute(run_id=run.pk, worker="manage.py")
    run.refresh_from_db()
    if status != RunStatus.SUCCEEDED or run.version is None:
        raise ValueError(f"Training failed: {run.error or status}")
    if router.active_version_id != run.version.pk:
        services.version_activate(router=router, number=run.version.number)
    return run.version


# --- lifecycle: what the promotion rule needs of training ----------------------------------------


def experiment_started_at(router: Router, *, version: int) -> Any:
    """When ``version`` last became the router's shadow or challenger (None: never audited)."""
    from training.models import RouterEventKind

    return (
        RouterEvent.objects.filter(
            router=router,
            to_version=version,
            kind__in=(RouterEventKind.SHADOW_STARTED, RouterEventKind.AB_STARTED),
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )


def promotion_candidates(limit: int) -> list[Router]:
    """Routers with the rule "promote if better" and an experiment running (at most ``limit``)."""
    from training import lifecycle

    return lifecycle.routers_with_promotion_rule(limit)


def version_promote(*, router: Router, number: int, evidence: dict[str, Any]) -> Router:
    """Make ``number`` serve on the rule's evidence, audited (``training.lifecycle``)."""
    from training import lifecycle

    return lifecycle.version_promote(router=router, number=number, evidence=evidence)


def router_lifecycle_update(*, router: Router, changes: dict[str, Any], actor: str) -> Router:
    """Change the router's experiment settings, audited (``training.lifecycle``)."""
    from training import lifecycle

    return lifecycle.router_lifecycle_update(router=router, changes=changes, actor=actor)


def router_rollback(*, router: Router, actor: str) -> Router:
    """Serve the version that served before the last switch, audited (``training.lifecycle``)."""
    from training import lifecycle

    return lifecycle.router_rollback(router=router, actor=actor)


def lifecycle_input() -> type[Any]:
    """The API's input serializer of lifecycle settings, which the dashboard's form checks with
    too (loaded on first use: the gateway imports this module)."""
    from training.lifecycle_api import LifecycleInput

    return LifecycleInput
