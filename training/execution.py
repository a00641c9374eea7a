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
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from routerhub.memory import memory_ceiling
from training import ingest
from training.drift import drift_reference_build
from training.heldout import HeldOut, heldout_save
from training.learner import artifacts
from training.learner.featurizer import FeaturizerConfig
from training.learner.report import report_build
from training.learner.sampling import router_fit_sampled, training_subset
from training.learner.task_hint_report import task_hints_report
from training.learner.trainer import FitResult, TrainerConfig, TrainingData
from training.lifecycle import router_event_record
from training.models import (
    Dataset,
    Router,
    RouterEventKind,
    RouterVersion,
    RunStatus,
    TrainingRun,
)
from training.routellm_rates import calibration_store_after_training
from training.run_events import training_run_announce
from training.tokens import estimated_tokens

logger = logging.getLogger(__name__)

STAGE_EVALUATING = "evaluating"
STAGE_SAVING = "saving"
HEARTBEAT_SECONDS = 5.0


class RunCancelledError(Exception):
    """The run was cancelled; raised at a checkpoint to unwind the training."""


# --- preparing data ---------------------------------------------------------------------------------
@dataclass
class Orientation:
    """Scores are turned higher-is-better for learning; ``display`` maps them back."""

    maximize: bool
    all_binary: bool

    def forward(self, scores: np.ndarray) -> np.ndarray:
        if self.maximize:
            return scores
        return 1.0 - scores if self.all_binary else -scores

    def display(self, value: float) -> float:
        if self.maximize:
            return value
        return 1.0 - value if self.all_binary else -value

    def display_many(self, scores: np.ndarray) -> np.ndarray:
        """``display`` of every score of an array."""
        if self.maximize:
            return scores
        return np.asarray(1.0 - scores if self.all_binary else -scores)


def load_parsed(dataset: Dataset) -> ingest.ParsedDataset:
    with dataset.parsed_file.open("rb") as handle:
        content = handle.read()
    summary = dataset.model_summary
    return ingest.normalized_from_parquet(
        content, [m["id"] for m in summary], [bool(m.get("binary")) for m in summary]
    )


def training_costs(
    parsed: ingest.ParsedDataset,
    columns: list[int],
    options: dict[str, Any],
    orientation: Orientation | None = None,
) -> tuple[np.ndarray, str]:
    """Per-row USD costs from the dataset, else from ``options.prices``, else rank-based (the
    better a model's mean score in ``orientation``'s direction, the higher its rank)."""
    if parsed.costs is not None:
        return parsed.costs[:, columns], "dataset"
    models = [parsed.models[j] for j in columns]
    prices = options.get("prices")
    if prices:
        price = np.array([prices[m] for m in models], dtype=np.float64)
        if options.get("price_unit") == "per_request":
            return np.tile(price, (len(parsed.prompts), 1)), "prices_per_request"
        tokens = np.array([estimated_tokens(p) for p in parsed.prompts])
        return np.outer(tokens, price) / 1e6, "prices_per_million_tokens"
    # Nothing known: assume the better a model scores, the more it costs (relative units 1..m).
    scores = parsed.scores[:, columns]
    oriented = orientation.forward(scores) if orientation is not None else scores
    ranks = np.argsort(np.argsort(oriented.mean(axis=0))) + 1.0
    return np.tile(ranks, (len(parsed.prompts), 1)), "rank"


def training_data(
    dataset: Dataset, candidates: list[str], options: dict[str, Any]
) -> tuple[TrainingData, Orientation, str]:
    parsed = load_parsed(dataset)
    columns = [parsed.models.index(c) for c in candidates]
    binary = [parsed.binary[j] for j in columns]
    orientation = Orientation(maximize=dataset.maximize, all_binary=all(binary))
    costs, source = training_costs(parsed, columns, options, orientation)
    data = TrainingData(
        prompts=parsed.prompts,
        models=list(candidates),
        scores=orientation.forward(parsed.scores[:, columns]),
        costs=costs,
        binary=binary,
        costs_known=source != "rank",
        tasks=parsed.tasks,
        task_parents=parsed.task_parents,
    )
    return data, orientation, source


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
    report, held = _evaluate(fit, data, orientation, options, cost_source, candidates)
    report["training_seconds"] = round(train_seconds, 2)
    report["embeddings"] = fit.router.featurizer.config.embeddings  # ROUTER_EMBEDDINGS at training
    progress(STAGE_SAVING, 0.96)
    reference = drift_reference_build(fit.router.featurizer, data.prompts)
    version = _save_version(run, fit, report, held, reference)
    calibration_store_after_training(version)  # RouteLLM's rates, kept if the dataset goes
    return version


def _evaluate(
    fit: FitResult,
    data: TrainingData,
    orientation: Orientation,
    options: dict[str, Any],
    cost_source: str,
    candidates: list[str],
) -> tuple[dict[str, Any], HeldOut]:
    """The version's report and the held-out rows it was computed on."""
    test_id = options.get("test_dataset")
    if test_id is None:
        total = len(data.prompts)
        if fit.oof_rows is not None:  # trained past TrainerConfig.sample_rows
            data = training_subset(data, fit.oof_rows)
        nested = fit.nested
        evaluation = _cross_validation_evaluation(fit, total, len(data.prompts), cost_source)
        report = report_build(
            router=fit.router,
            predicted=fit.oof_predicted if nested is None else nested.predicted,
            prompts=data.prompts,
            scores=data.scores,
            costs=data.costs,
            evaluation=evaluation,
            display=orientation.display,
            tasks=data.tasks,
            task_parents=data.task_parents,
            incumbents=fit.oof_incumbents,
            picks=None if nested is None else nested.picks,
        )
        return report, _held_out(fit.oof_predicted, data, orientation)
    test = Dataset.objects.get(pk=test_id)
    test_data, _, test_cost_source = training_data(test, candidates, options)
    predicted = fit.router.predict_many(test_data.prompts)
    evaluation = {
        "method": "holdout",
        "test_dataset": test.pk,
        "rows": len(test_data.prompts),
        "cost_source": test_cost_source,
    }
    if fit.families is not None:  # chosen out of fold on the training rows
        evaluation["incumbents"] = fit.families.summary()
    report = report_build(
        router=fit.router,
        predicted=predicted,
        prompts=test_data.prompts,
        scores=test_data.scores,
        costs=test_data.costs,
        evaluation=evaluation,
        display=orientation.display,
        tasks=test_data.tasks,
        task_parents=test_data.task_parents,
    )
    if test_data.tasks is not None and data.tasks is not None:
        evaluation["task_hints"] = _task_hints(fit, predicted, data, test_data, orientation)
    return report, _held_out(predicted, test_data, orientation)


def _task_hints(
    fit: FitResult,
    predicted: np.ndarray,
    data: TrainingData,
    test: TrainingData,
    orientation: Orientation,
) -> dict[str, Any]:
    """The held-out report's ``evaluation.task_hints`` (``task_hint_report.py``)."""
    assert test.tasks is not None and data.tasks is not None
    return task_hints_report(
        fit.router,
        predicted,
        (test.prompts, test.scores, test.costs, test.tasks, test.task_parents),
        (data.scores, data.tasks, data.task_parents),
        orientation.display,
    )


def _held_out(predicted: np.ndarray, data: TrainingData, orientation: Orientation) -> HeldOut:
    return HeldOut(
        models=list(data.models),
        predicted=predicted,
        scores=orientation.display_many(data.scores),
        costs=data.costs,
    )


def _cross_validation_evaluation(
    fit: FitResult, total: int, rows: int, cost_source: str
) -> dict[str, Any]:
    """The report's ``evaluation`` of a cross-validated run over ``rows`` of ``total`` rows."""
    evaluation: dict[str, Any] = {
        "dataset_rows": total,
        "method": "cross_validation",
        "folds": fit.folds,
        "rows": rows,
        "cost_source": cost_source,
        "note": "out-of-fold predictions: every row is scored by models that never saw its "
        "label (the featurizer is fitted on prompts only, without labels)",
        "nested": "each fold's decisions use the blend, shrinkage, clusters and policy table "
        "chosen on the other folds' out-of-fold rows only (nested cross-validation)"
        if fit.nested is not None
        else None,
    }
    if fit.families is not None:
        evaluation["incumbents"] = fit.families.summary()
    if fit.oof_rows is not None:
        evaluation["sample"] = (
            f"a uniform sample of {rows} of the {total} rows is featurized and "
            "cross-validated; the LightGBM heads are then refitted on every row"
        )
    return evaluation


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
