"""The body of a training run: claim it, train, evaluate, save the version, record the outcome.

Called by ``training.tasks.training_run_execute``. A run is claimed with a conditional UPDATE,
so a duplicate delivery never trains twice; a heartbeat thread keeps ``heartbeat_at`` fresh
while LightGBM holds the GIL-free native code, and the sweeper requeues or fails a run whose
heartbeat stops (the worker died).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from routerhub.memory import memory_ceiling
from training.drift import drift_reference_build
from training.heldout import HeldOut, heldout_save
from training.learner import artifacts
from training.learner.featurizer import FeaturizerConfig
from training.learner.sampling import router_fit_sampled
from training.learner.trainer import FitResult, TrainerConfig
from training.lifecycle import router_event_record
from training.models import (
    Router,
    RouterEventKind,
    RouterVersion,
    RunStatus,
    TrainingRun,
)
from training.routellm_rates import calibration_store_after_training
from training.run_data import training_data
from training.run_evaluation import run_evaluate
from training.run_events import training_run_announce

logger = logging.getLogger(__name__)

STAGE_EVALUATING = "evaluating"
STAGE_SAVING = "saving"
HEARTBEAT_SECONDS = 5.0


class RunCancelledError(Exception):
    """The run was cancelled; raised at a checkpoint to unwind the training."""


# --- run bookkeeping -------------------------------------------------------------------------------
def _claim(run_id: int, worker: str) -> bool:
    """Atomically move a queued run to running; False if another worker has it or it is done."""
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=RunStatus.QUEUED, cancel_requested=False)
    return bool(
        claimed.update(
            status=RunStatus.RUNNING,
            stage="starting",
            progress=0.0,
            attempts=F("attempts") + 1,
            worker=worker,
            started_at=now,
            heartbeat_at=now,
        )
    )


def _finish(run_id: int, status: str, **fields: Any) -> None:
    TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        status=status, finished_at=timezone.now(), heartbeat_at=timezone.now(), **fields
    )


class _Heartbeat:
    """Refresh ``heartbeat_at`` every few seconds from a thread while the run trains."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{run_id}")

    def _beat(self) -> None:
        try:
            while not self.stop.wait(HEARTBEAT_SECONDS):
                TrainingRun.objects.filter(pk=self.run_id, status=RunStatus.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        finally:
            connection.close()

    def __enter__(self) -> _Heartbeat:
        # Inside an enclosing transaction (eager tasks in tests) another connection could not
        # see the run and SQLite would block it; the progress writer beats there instead.
        if not connection.in_atomic_block:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=HEARTBEAT_SECONDS * 2)


def _progress_writer(run_id: int) -> Callable[[str, float], None]:
    last = [0.0]

    def write(stage: str, progress: float) -> None:
        state = TrainingRun.objects.filter(pk=run_id).values_list("cancel_requested", flat=True)
        if state.first():
            raise RunCancelledError
        now = time.monotonic()
        if now - last[0] < 0.2 and progress < 1.0:
            return
        last[0] = now
        TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
            stage=stage,
            progress=round(min(max(progress, 0.0), 1.0), 4),
            heartbeat_at=timezone.now(),
        )

    return write


# --- the run ---------------------------------------------------------------------------------------
def training_run_execute(*, run_id: int, worker: str | None = None) -> str:
    """Train the run's router; returns the run's final status. Idempotent per run id."""
    worker = worker or socket.gethostname()
    if not _claim(run_id, worker):
        status = TrainingRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
        logger.info("training run %s not claimed (status %s)", run_id, status)
        return str(status)
    run = TrainingRun.objects.select_related("router", "dataset").get(pk=run_id)
    try:
        # A run that outgrows its memory budget fails with a reason (``_reason``) rather than
        # growing until the kernel kills the worker.
        with _Heartbeat(run_id), memory_ceiling(int(settings.TRAINING_MEMORY_BYTES)):
            version = _train(run, _progress_writer(run_id))
    except RunCancelledError:
        _finish(run_id, RunStatus.CANCELLED, stage="cancelled", error="Cancelled on request.")
        return RunStatus.CANCELLED
    except Exception as exc:
        logger.exception("training run %s failed", run_id)
        _finish(run_id, RunStatus.FAILED, error=_reason(exc))
        training_run_announce(run_id)
        return RunStatus.FAILED
    _finish(run_id, RunStatus.SUCCEEDED, stage="done", progress=1.0, version=version, error="")
    training_run_announce(run_id)
    return RunStatus.SUCCEEDED


def _reason(exc: BaseException) -> str:
    from celery.exceptions import SoftTimeLimitExceeded

    if isinstance(exc, SoftTimeLimitExceeded):
        limit = settings.TRAINING_SOFT_TIME_LIMIT
        return f"Training exceeded its time limit ({limit} s); try a smaller dataset."
    if isinstance(exc, MemoryError):
        return "Training ran out of memory; try a smaller dataset or fewer candidates."
    return f"{type(exc).__name__}: {exc}"[:2000]


def _train(run: TrainingRun, progress: Callable[[str, float], None]) -> RouterVersion:
    router, dataset = run.router, run.dataset
    if dataset is None:
        raise ValueError("the dataset was deleted before training started")
    candidates = list(router.candidates)
    options = dict(run.options)
    data, orientation, cost_source = training_data(dataset, candidates, options)
    started = time.monotonic()
    config = TrainerConfig(
        folds=int(options.get("folds", 5)),
        featurizer=FeaturizerConfig(embeddings=settings.ROUTER_EMBEDDINGS),
    )
    fit = router_fit_sampled(data, config, progress)
    train_seconds = time.monotonic() - started
    progress(STAGE_EVALUATING, 0.92)
    report, held = run_evaluate(fit, data, orientation, options, cost_source, candidates)
    report["training_seconds"] = round(train_seconds, 2)
    report["embeddings"] = fit.router.featurizer.config.embeddings  # ROUTER_EMBEDDINGS at training
    progress(STAGE_SAVING, 0.96)
    reference = drift_reference_build(fit.router.featurizer, data.prompts)
    version = _save_version(run, fit, report, held, reference)
    calibration_store_after_training(version)  # RouteLLM's rates, kept if the dataset goes
    return version


HEADLINE_KEYS = ("apgr", "cpt50", "cpt80", "aiq", "aiq_zero_router", "cost_at_best_single_quality")


def _save_version(
    run: TrainingRun,
    fit: FitResult,
    report: dict[str, Any],
    held: HeldOut,
    drift_reference: dict[str, Any],
) -> RouterVersion:
    files = artifacts.router_to_files(fit.router)
    digests = artifacts.files_digests(files)
    # loads as serving will (ArtifactError fails the run): no version that cannot load is stored
    artifacts.router_from_files(files, digests, artifacts.manifest_checksum(digests))
    prefix = f"routers/{run.organization_id}/{run.router_id}/run-{run.pk}-a{run.attempts}"
    stored = {
        name: {
            "path": default_storage.save(f"{prefix}/{name}", ContentFile(content)),
            "sha256": digests[name],
        }
        for name, content in files.items()
    }
    heldout_save(prefix, held)
    metrics = {k: report.get(k) for k in HEADLINE_KEYS if k in report}
    metrics["training_seconds"] = report.get("training_seconds")
    with transaction.atomic():
        router = Router.objects.select_for_update().get(pk=run.router_id)
        # Cancellation checked inside the lock, so a cancelled run never publishes a version.
        if (
            TrainingRun.objects.filter(pk=run.pk)
            .filter(Q(cancel_requested=True) | ~Q(status=RunStatus.RUNNING))
            .exists()
        ):
            raise RunCancelledError
        number = (router.versions.aggregate(top=Max("number"))["top"] or 0) + 1
        version = RouterVersion.objects.create(
            router=router,
            number=number,
            dataset=run.dataset,
            candidates=held.models,
            artifact_prefix=prefix,
            artifact_files=stored,
            checksum=artifacts.manifest_checksum(digests),
            metrics=metrics,
            report=report,
            drift_reference=drift_reference,
        )
        if router.active_version_id is None or router.auto_activate:
            previous = router.active_version.number if router.active_version else None
            router.active_version = version
            router.activated_at = timezone.now()
            router.save(update_fields=["active_version", "activated_at"])
            router_event_record(
                router=router,
                kind=RouterEventKind.ACTIVATED,
                actor=f"training-run:{run.pk}",
                from_version=previous,
                to_version=number,
            )
    return version
