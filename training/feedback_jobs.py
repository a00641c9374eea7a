"""Retrain from feedback off the request: the request records a queued run and its dataset, a task
on the training queue builds the dataset and starts the run.

The request (``feedback_retrain_queue``) only checks and writes rows: a ``validating`` dataset
with no file yet and a ``queued`` run at stage ``building_dataset`` (the router's one active run,
so a second click is answered 409 naming it). The task (``feedback_build``, run by routing's
``routing.feedback_retrain_build``, which reads the feedback) counts a delivery on the dataset
before reading anything, builds the rows (``training.feedback``) under the training memory
ceiling, stores and validates them, then moves the run to stage ``queued`` and queues its
training. Whatever stops it ends the run ``failed`` and the dataset ``invalid`` with the reason:
an exception or an invalid dataset at once, a worker killed over and over after
``MAX_VALIDATION_ATTEMPTS`` deliveries, a task never delivered (or never finished) after
``FEEDBACK_RETRAIN_DEADLINE_SECONDS`` (``feedback_builds_sweep``, with the training sweep).
A cancel while it builds refuses its dataset in the cancel's transaction
(``feedback_build_cancelled``): the build then neither turns it ready nor queues training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from routerhub.domain import InvalidInput
from routerhub.memory import memory_ceiling
from training import dispatch, services
from training.dataset_services import MAX_VALIDATION_ATTEMPTS, built_file_save
from training.models import Dataset, DatasetStatus, Router, RouterVersion, RunStatus, TrainingRun
from training.run_events import training_run_announce
from training.serving import FeedbackExample, FeedbackRetrain

logger = logging.getLogger(__name__)

BUILDING = "building_dataset"
# Beyond a build's hard time limit before the sweep fails it: the worker's limit timer starts
# a little after the claim, and the claim's commit may reach the database late.
CLAIM_MARGIN_SECONDS = 120

# Reads the router's feedback given before a moment (the run's creation), newest first, bounded.
FeedbackReader = Callable[[Router, datetime], Sequence[FeedbackExample]]


def _previous_options(router: Router, version: RouterVersion) -> tuple[dict[str, Any], list[str]]:
    """The options the active version was trained with (folds, prices, held-out dataset), so
    the retrained version is measured and costed as it was, each kept only while it still holds
    for the router's candidates now; and a sentence for each one left out."""
    run = TrainingRun.objects.filter(version=version).order_by("-pk").first()
    options = dict(run.options) if run is not None else {}
    candidates, notes = list(router.candidates), []
    # Prices must name every candidate and a held-out dataset must be ready and score them
    # all: a candidate added since (or a dataset deleted or re-validated) drops that option.
    for key in ("prices", "test_dataset"):
        if options.get(key) is None:
            continue
        try:
            services.options_validate({key: options[key]}, candidates, router.organization)
        except InvalidInput as exc:
            options.pop(key)
            notes.append(
                f"The active version's training option {key} is not used for this retrain: "
                f"{exc.message}"
            )
    return services.options_validate(options, candidates, router.organization), notes


def feedback_retrain_queue(*, router: Router, feedback_rows: int) -> FeedbackRetrain:
    """Record the retrain's dataset (``validating``, built later) and its queued run; the caller
    queues ``feedback_build`` once this commits. ``Conflict`` while the router has a run."""
    from training.feedback import feedback_retrain_check as check

    version = check(router)
    assert version.dataset is not None
    options, notes = _previous_options(router, version)  # decided before anything is written
    name = f"{router.slug}-feedback-{timezone.now().strftime('%Y%m%d-%H%M%S')}.jsonl"
    with transaction.atomic():
        dataset = Dataset.objects.create(
            organization_id=router.organization_id,
            name=name,
            original_filename=name,
            format="jsonl",
            maximize=version.dataset.maximize,
            warnings=notes,
        )
        run = services.training_run_record(
            router=router,
            dataset=dataset,
            candidates=list(router.candidates),
            options=options,
            stage=BUILDING,
        )
    return FeedbackRetrain(dataset, run, feedback_rows)


def feedback_build_fail(run_id: int, reason: str, where: Q | None = None) -> bool:
    """Fail a retrain still building its dataset (and matching ``where``), the dataset too, with
    ``reason``; a run building on (``where`` not matched) keeps its dataset validating."""
    building = TrainingRun.objects.filter(pk=run_id, status=RunStatus.QUEUED, stage=BUILDING)
    with transaction.atomic():
        failed = building.filter(where or Q()).update(
            status=RunStatus.FAILED, error=reason[:2000], finished_at=timezone.now()
        )
        dataset = Dataset.objects.filter(runs__pk=run_id, status=DatasetStatus.VALIDATING).first()
        if dataset is not None and (failed or not building.exists()):
            services.dataset_refuse(dataset, reason)
    if failed:
        logger.warning("feedback retrain %s failed: %s", run_id, reason)
        training_run_announce(run_id)
    return bool(failed)


CANCELLED_FIRST = "Not built: the retrain was cancelled first."
GAVE_UP = (
    f"Building this dataset from feedback stopped the worker {MAX_VALIDATION_ATTEMPTS} times "
    "(killed, most often for memory), so RouterHub gave up on it. Lower "
    "FEEDBACK_RETRAIN_MAX_ROWS or give the training worker more memory, then retrain from "
    "feedback again."
)


def feedback_build_cancelled(run_id: int) -> None:
    """Refuse the dataset of a retrain cancelled while building it (called inside the cancel's
    transaction, the run's row locked): ``validating``, or ``ready`` from a build that has not
    queued the training yet, it turns ``invalid``; the build then finds the run cancelled and
    its dataset refused (``_dataset_finish`` writes only a ``validating`` one) and stops."""
    # A ready one was built but never trained on: not left usable (nothing else uses it).
    unbuilt = Dataset.objects.filter(
        runs__pk=run_id, status__in=(DatasetStatus.VALIDATING, DatasetStatus.READY)
    )
    ids = list(unbuilt.select_for_update().values_list("pk", flat=True))
    Dataset.objects.filter(pk__in=ids).update(
        status=DatasetStatus.INVALID,
        errors=[{"row": None, "column": None, "message": CANCELLED_FIRST}],
        validated_at=timezone.now(),
    )


@dataclass(frozen=True)
class _Build:
    run: TrainingRun
    dataset: Dataset
    built: bool = False  # built and valid by an earlier delivery stopped before queueing training


def _claim(run_id: int) -> _Build | None:
    """The retrain to build now, taken (``heartbeat_at``, written once here: the claim time,
    database time, from which the sweep leaves the build its hard time limit and a margin) and
    its delivery counted; None when there is nothing to do."""
    run = (
        TrainingRun.objects.select_related("router__organization", "router__active_version")
        .filter(pk=run_id)
        .first()
    )
    if run is None or run.dataset_id is None:
        return None
    taken = TrainingRun.objects.filter(pk=run_id, status=RunStatus.QUEUED, stage=BUILDING).update(
        heartbeat_at=Now()
    )
    if not taken:
        unbuilt = Dataset.objects.filter(
            pk=run.dataset_id, status=DatasetStatus.VALIDATING, file=""
        ).first()
        if unbuilt is not None:  # cancelled (or failed) before it was built
            run.refresh_from_db(fields=["status"])
            services.dataset_refuse(unbuilt, f"Not built: the retrain was {run.status} first.")
        return None
    dataset, counted = services.dataset_attempt(run.dataset_id, gave_up=GAVE_UP)
    if dataset is None or not counted:
        if dataset is not None and dataset.status == DatasetStatus.INVALID:
            feedback_build_fail(run_id, f"The feedback dataset was not built: {_problems(dataset)}")
        if dataset is not None and dataset.status == DatasetStatus.READY:
            return _Build(run, dataset, built=True)
        return None
    return _Build(run, dataset)


def _problems(dataset: Dataset) -> str:
    return "; ".join(str(error["message"]) for error in dataset.errors[:3])


def _reason(exc: BaseException) -> str:
    from celery.exceptions import SoftTimeLimitExceeded

    if isinstance(exc, InvalidInput):
        return exc.message
    if isinstance(exc, SoftTimeLimitExceeded):
        limit = settings.FEEDBACK_RETRAIN_TIME_LIMIT
        return f"Building the feedback dataset exceeded its time limit ({limit} s)."
    if isinstance(exc, MemoryError):
        return "Building the feedback dataset ran out of memory; lower FEEDBACK_RETRAIN_MAX_ROWS."
    return f"Building the feedback dataset failed ({type(exc).__name__}: {exc})"[:2000]


def feedback_build(run_id: int, read: FeedbackReader) -> str:
    """Build a queued retrain's dataset from ``read``'s feedback and queue its training; the
    run's status afterwards. Safe to deliver twice (a run no longer building is left alone)."""
    from training.feedback import feedback_dataset

    build = _claim(run_id)
    if build is None:
        return _status(run_id)
    if build.built:
        return _training_queue(build.run)
    router, dataset, notes = build.run.router, build.dataset, list(build.dataset.warnings)
    try:
        with memory_ceiling(int(settings.TRAINING_MEMORY_BYTES)):
            rows, columns = feedback_dataset(router, read(router, build.run.created_at))
            content = b"\n".join(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY) for r in rows)
            del rows
        if dataset.file:  # written by a delivery whose worker stopped: replaced, not orphaned
            dataset.file.delete(save=False)
        # Under ``BUILT_PREFIX``: not counted in the organization's upload limits.
        built_file_save(dataset, f"{router.organization_id}-{dataset.name}", ContentFile(content))
        dataset.columns, dataset.size_bytes = columns or {}, len(content)
        dataset.save(update_fields=["file", "columns", "size_bytes"])
        del content
        dataset = services.dataset_parse(dataset, notes)  # the left-out options' notes too
    except Exception as exc:  # recorded on the run and the dataset, never left building
        if not isinstance(exc, InvalidInput):
            logger.exception("feedback retrain %s: building its dataset failed", run_id)
        feedback_build_fail(run_id, _reason(exc))
        return _status(run_id)  # failed, or cancelled meanwhile
    if dataset.status != DatasetStatus.READY:  # invalid, or refused by a cancel meanwhile
        feedback_build_fail(run_id, f"The feedback dataset did not validate: {_problems(dataset)}")
        return _status(run_id)
    return _training_queue(build.run)


def _status(run_id: int) -> str:
    return str(TrainingRun.objects.filter(pk=run_id).values_list("status", flat=True).first())


def _training_queue(run: TrainingRun) -> str:
    """Move the built retrain to stage ``queued`` and queue its training (unless cancelled)."""
    with transaction.atomic():
        moved = TrainingRun.objects.filter(
            pk=run.pk, status=RunStatus.QUEUED, stage=BUILDING
        ).update(stage="queued")
        if moved:
            dispatch.training_run_queue(run.pk)
    return _status(run.pk)


def feedback_builds_sweep(*, later: timedelta = timedelta(0)) -> list[int]:
    """Fail retrains whose dataset was not built within ``FEEDBACK_RETRAIN_DEADLINE_SECONDS``
    (the task lost, or its worker stopped and the delivery never came back); a build a worker
    took (``heartbeat_at``: its claim time) is left its hard time limit plus
    ``CLAIM_MARGIN_SECONDS`` from then, so a running build is never failed under it. Both sides
    read the database's clock (``Now()``), not two workers'; ``later``: the sweep as it would
    run that much later."""
    limit = int(settings.FEEDBACK_RETRAIN_DEADLINE_SECONDS)
    now = Now() + later
    hard = int(settings.FEEDBACK_RETRAIN_TIME_LIMIT) + 60  # the task's time_limit
    running = now - timedelta(seconds=hard + CLAIM_MARGIN_SECONDS)
    where = Q(created_at__lt=now - timedelta(seconds=limit)) & (
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=running)
    )
    stale = TrainingRun.objects.filter(where, status=RunStatus.QUEUED, stage=BUILDING)
    reason = (
        f"The feedback dataset was not built within {limit} s of the request (no worker took "
        "the task, or its worker stopped); retrain from feedback again."
    )
    ids = list(stale.values_list("pk", flat=True)[:100])
    return [run_id for run_id in ids if feedback_build_fail(run_id, reason, where)]
