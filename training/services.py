"""Writes for training: datasets, routers, versions and training runs (start, cancel, sweep).

The body of a training run lives in ``training.execution``; Celery entry points in
``training.tasks`` only call these functions, and work is queued through ``training.dispatch``
(so this module never imports the tasks).
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Organization
from routerhub.domain import Conflict, InvalidInput, NotFound, TooLarge
from routerhub.memory import memory_ceiling
from routerhub.text import decimal_number
from training import dispatch, ingest
from training.models import (
    ACTIVE_STATUSES,
    Dataset,
    DatasetStatus,
    Router,
    RouterVersion,
    RunStatus,
    TrainingRun,
)
from training.run_events import training_run_announce

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
# Deliveries of one dataset's validation that may end with the worker process gone (killed by the
# kernel, the pod restarted) before the dataset is refused instead of delivered again.
MAX_VALIDATION_ATTEMPTS = 3


def heartbeat_stale_after() -> timedelta:
    return timedelta(seconds=float(settings.TRAINING_HEARTBEAT_STALE_SECONDS))


# --- datasets -----------------------------------------------------------------------------------
def dataset_create(
    *,
    organization: Organization,
    name: str,
    upload: UploadedFile[bytes],
    columns: dict[str, Any] | None,
    maximize: bool,
) -> Dataset:
    """Store an upload and queue its validation (after the transaction commits)."""
    limits = ingest.Limits.from_settings()
    if upload.size is not None and upload.size > limits.max_bytes:
        raise TooLarge(
            f"The file is {ingest.human_bytes(upload.size)}; "
            f"the limit is {ingest.human_bytes(limits.max_bytes)}.",
            param="file",
        )
    dataset = Dataset(
        organization=organization,
        name=name,
        original_filename=(upload.name or "")[:255],
        size_bytes=upload.size or 0,
        columns=columns or {},
        maximize=maximize,
    )
    dataset.file.save(f"{organization.pk}-{upload.name or 'dataset'}", upload, save=False)
    dataset.save()
    dispatch.dataset_validation_queue(dataset.pk)
    return dataset


class DatasetNotReady(Exception):
    """A dataset stored and validated in one call did not validate; ``dataset.errors`` says why."""

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(f"dataset {dataset.pk} is {dataset.status}")
        self.dataset = dataset

    def problems(self, limit: int) -> str:
        return "; ".join(error["message"] for error in self.dataset.errors[:limit])


def dataset_from_bytes(
    *,
    organization: Organization,
    name: str,
    content: bytes,
    columns: dict[str, Any] | None,
    maximize: bool,
) -> Dataset:
    """Store a dataset RouterHub made itself and validate it here, not on a worker: a ready
    dataset, or ``DatasetNotReady``."""
    with transaction.atomic():
        dataset = dataset_create(
            organization=organization,
            name=name,
            upload=SimpleUploadedFile(name, content),
            columns=columns,
            maximize=maximize,
        )
    validated = dataset_validate(dataset_id=dataset.pk) or dataset
    validated.refresh_from_db()
    if validated.status != DatasetStatus.READY:
        raise DatasetNotReady(validated)
    return validated


def dataset_validate(*, dataset_id: int) -> Dataset | None:
    """Parse a ``validating`` dataset into ``ready`` or ``invalid``; safe to call twice.

    Each call counts an attempt before reading anything: tasks are acknowledged late, so a file
    whose processing kills the worker is delivered again, and after ``MAX_VALIDATION_ATTEMPTS``
    such deliveries the dataset is refused rather than tried forever. The parse runs under a
    memory ceiling (``DATASET_VALIDATION_MEMORY_BYTES``) so it fails with a reason instead.
    """
    counted = Dataset.objects.filter(pk=dataset_id, status=DatasetStatus.VALIDATING).update(
        validation_attempts=F("validation_attempts") + 1
    )
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None or not counted:
        return dataset
    if dataset.validation_attempts > MAX_VALIDATION_ATTEMPTS:
        logger.warning(
            "dataset %s: validation gave up after %s attempts", dataset_id, MAX_VALIDATION_ATTEMPTS
        )
        message = (
            f"Processing this file stopped the worker {MAX_VALIDATION_ATTEMPTS} times, so "
            "RouterHub gave up on it. Check its size, rows and columns against the "
            "limits, or split it into smaller files."
        )
        return _dataset_finish(dataset, errors=[_file_error(message)])
    try:
        parsed, normalized = _dataset_read(dataset)
    except Exception as exc:  # a malformed file must never crash the worker or stay validating
        return _dataset_finish(dataset, errors=_validation_errors(dataset_id, exc))
    parsed_name = default_storage.save(
        f"datasets/parsed/{dataset.organization_id}-{dataset.pk}.parquet", ContentFile(normalized)
    )
    dataset.parsed_file.name = parsed_name
    dataset.rows = len(parsed.prompts)
    dataset.model_summary = parsed.summary()
    dataset.has_costs = parsed.costs is not None
    dataset.warnings = parsed.warnings
    return _dataset_finish(dataset, errors=[])


def _dataset_read(dataset: Dataset) -> tuple[ingest.ParsedDataset, bytes]:
    """The uploaded file parsed and normalised to Parquet, under the validation memory budget."""
    with memory_ceiling(int(settings.DATASET_VALIDATION_MEMORY_BYTES)):
        with dataset.file.open("rb") as handle:
            content = handle.read()
        dataset.format = ingest.sniff_format(content[:8192])
        parsed = ingest.dataset_parse(content, columns=dataset.columns, maximize=dataset.maximize)
        normalized = ingest.normalized_to_parquet(parsed)
        del content
    return parsed, normalized


def _validation_errors(dataset_id: int, exc: Exception) -> list[dict[str, Any]]:
    """What the dataset page shows for a file whose reading failed (called while handling it)."""
    from celery.exceptions import SoftTimeLimitExceeded

    if isinstance(exc, ingest.DatasetInvalidError):
        return exc.errors
    if isinstance(exc, MemoryError):
        logger.warning("dataset %s: validation ran out of its memory budget", dataset_id)
        budget = _binary_size(int(settings.DATASET_VALIDATION_MEMORY_BYTES))
        message = (
            f"Validating this file needed more than its memory budget ({budget}). Reduce its "
            "rows, columns or cell sizes, or split it into smaller files."
        )
        return [_file_error(message)]
    if isinstance(exc, SoftTimeLimitExceeded):
        return [_file_error("Validating this file took too long; split it into smaller files.")]
    logger.exception("dataset %s: unexpected validation failure", dataset_id)
    return [_file_error(f"The file could not be read ({type(exc).__name__}: {exc}).")]


def _binary_size(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def _file_error(message: str) -> dict[str, Any]:
    return {"row": None, "column": None, "message": message}


def _dataset_finish(dataset: Dataset, *, errors: list[dict[str, Any]]) -> Dataset:
    dataset.status = DatasetStatus.INVALID if errors else DatasetStatus.READY
    dataset.errors = errors[: ingest.MAX_ERRORS]
    dataset.validated_at = timezone.now()
    dataset.save()
    return dataset


def dataset_delete(*, dataset: Dataset) -> None:
    if TrainingRun.objects.filter(dataset=dataset, status__in=ACTIVE_STATUSES).exists():
        raise Conflict("A training run is using this dataset; cancel it or wait for it to finish.")
    for field in (dataset.file, dataset.parsed_file):
        if field.name:
            field.delete(save=False)
    dataset.delete()


# --- routers and versions -------------------------------------------------------------------------
def router_create(
    *,
    organization: Organization,
    slug: str,
    name: str,
    candidates: list[str],
    default_tradeoff: float = 0.5,
    auto_activate: bool = False,
) -> Router:
    if Router.objects.filter(organization=organization, slug=slug).exists():
        raise Conflict(f"A router with slug '{slug}' already exists.", param="slug")
    return Router.objects.create(
        organization=organization,
        slug=slug,
        name=name or slug,
        candidates=list(dict.fromkeys(candidates)),
        default_tradeoff=default_tradeoff,
        auto_activate=auto_activate,
    )


def router_update(*, router: Router, changes: dict[str, Any]) -> Router:
    if "slug" in changes and changes["slug"] != router.slug:
        taken = Router.objects.filter(organization_id=router.organization_id, slug=changes["slug"])
        if taken.exists():
            raise Conflict(f"A router with slug '{changes['slug']}' already exists.", param="slug")
    for field in ("slug", "name", "candidates", "default_tradeoff", "auto_activate"):
        if field in changes:
            setattr(router, field, changes[field])
    router.save()
    return router


def router_delete(*, router: Router) -> None:
    if router.runs.filter(status__in=ACTIVE_STATUSES).exists():
        raise Conflict("A training run is in progress for this router; cancel it first.")
    paths = [f["path"] for v in router.versions.all() for f in v.artifact_files.values()]
    router.delete()
    for path in paths:
        default_storage.delete(path)


def version_activate(*, router: Router, number: int) -> Router:
    """Make version ``number`` the one serving uses (also how a rollback is done), loaded into
    this process first thing after the commit: its first decision here reads no storage."""
    with transaction.atomic():
        locked = Router.objects.select_for_update().get(pk=router.pk)
        version = RouterVersion.objects.filter(router=locked, number=number).first()
        if version is None:
            raise NotFound(f"Router '{router.slug}' has no version {number}.")
        locked.active_version = version
        locked.activated_at = timezone.now()
        locked.save(update_fields=["active_version", "activated_at"])
        transaction.on_commit(partial(_version_warm, version))
    return locked


def _version_warm(version: RouterVersion) -> None:
    # Other serving processes warm it from their router cache (routing.routers); this one
    # serves the dashboard or API call that activated it, so it loads it now (~70 ms).
    from training.predictor import predictor_for_version  # LightGBM: only where routers serve

    try:
        predictor_for_version(version, warmup=True)
    except Exception:
        logger.exception("router version %s could not be loaded after activation", version.pk)


# --- training runs ---------------------------------------------------------------------------------
def _validate_options(
    options: dict[str, Any], candidates: list[str], organization: Organization
) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    folds = options.get("folds", 5)
    if not isinstance(folds, int) or isinstance(folds, bool) or not 2 <= folds <= 10:
        raise InvalidInput("options.folds must be an integer from 2 to 10.", param="options.folds")
    clean["folds"] = folds
    prices = options.get("prices")
    if prices is not None:
        if not isinstance(prices, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in prices.values()
        ):
            raise InvalidInput(
                "options.prices must map model ids to non-negative numbers.", param="options.prices"
            )
        missing = [c for c in candidates if c not in prices]
        if missing:
            raise InvalidInput(
                f"options.prices has no price for: {', '.join(missing)}.", param="options.prices"
            )
        clean["prices"] = {str(k): float(v) for k, v in prices.items()}
    unit = options.get("price_unit", "per_million_tokens")
    if unit not in ("per_million_tokens", "per_request"):
        raise InvalidInput(
            "options.price_unit must be 'per_million_tokens' or 'per_request'.",
            param="options.price_unit",
        )
    clean["price_unit"] = unit
    test_id = options.get("test_dataset")
    if test_id is not None:
        pk = decimal_number(test_id)  # "abc" or a list was a 500 from the lookup; "12" is 12
        test = Dataset.objects.filter(organization=organization, pk=pk).first() if pk else None
        if test is None:
            raise InvalidInput(
                "options.test_dataset is not one of your datasets.", param="options.test_dataset"
            )
        if test.status != DatasetStatus.READY:
            raise InvalidInput(
                f"options.test_dataset is {test.status}, not ready.", param="options.test_dataset"
            )
        missing = [c for c in candidates if c not in test.model_ids]
        if missing:
            raise InvalidInput(
                f"options.test_dataset has no scores for: {', '.join(missing)}.",
                param="options.test_dataset",
            )
        clean["test_dataset"] = test.pk
    return clean


def training_run_start(
    *, router: Router, dataset: Dataset, options: dict[str, Any] | None = None
) -> TrainingRun:
    """Check the dataset fits the router, record a queued run and enqueue it after commit."""
    if dataset.status != DatasetStatus.READY:
        raise InvalidInput(
            f"Dataset '{dataset.name}' is {dataset.status}; only a ready dataset can train a router.",
            param="dataset",
        )
    available = dataset.model_ids
    candidates = list(router.candidates) or available
    missing = [c for c in candidates if c not in available]
    if missing:
        raise InvalidInput(
            f"The router's candidates are not all in the dataset: missing {', '.join(missing)}. "
            f"The dataset has scores for: {', '.join(available)}.",
            param="dataset",
            metadata={"missing": missing, "dataset_models": available},
        )
    if len(candidates) < 2:
        raise InvalidInput("A router needs at least 2 candidates to train.", param="candidates")
    clean = _validate_options(options or {}, candidates, router.organization)
    try:
        with transaction.atomic():
            # Run starts of one organization take turns on its row, so the active-run count
            # below cannot be read by two requests at once; the partial unique index
            # ``one_active_run_per_router`` backs the per-router rule in any case.
            Organization.objects.select_for_update().only("pk").get(pk=router.organization_id)
            _active_runs_check(router)
            if not router.candidates:
                router.candidates = candidates
                router.save(update_fields=["candidates"])
            run = TrainingRun.objects.create(
                organization_id=router.organization_id,
                router=router,
                dataset=dataset,
                options=clean,
            )
            dispatch.training_run_queue(run.pk)
    except IntegrityError:
        _active_runs_check(router)
        raise
    return run


def _active_runs_check(router: Router) -> None:
    """409 if the router has a queued or running run, or its organization has its maximum."""
    active = TrainingRun.objects.filter(
        organization_id=router.organization_id, status__in=ACTIVE_STATUSES
    ).order_by("created_at", "pk")
    current = active.filter(router=router).values_list("pk", "status").first()
    if current is not None:
        run_id, status = current
        raise Conflict(
            f"Router '{router.slug}' already has a training run {status} (run {run_id}); wait "
            f"for it to finish or cancel it with POST /api/v1/training-runs/{run_id}/cancel.",
            param="router",
            metadata={"run": run_id, "status": status},
        )
    limit = int(settings.TRAINING_MAX_ACTIVE_RUNS_PER_ORGANIZATION)
    running = list(active.values_list("pk", flat=True)[: limit + 1])
    if len(running) >= limit:
        raise Conflict(
            f"Your organization already has {len(running)} training runs queued or running; "
            f"the limit is {limit} at once. Wait for one to finish or cancel one.",
            metadata={"runs": running[:limit], "limit": limit},
        )


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Cancel a queued run at once; ask a running one to stop at its next checkpoint."""
    now = timezone.now()
    cancelled = TrainingRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.CANCELLED, stage="cancelled", finished_at=now, cancel_requested=True
    )
    if not cancelled:
        requested = TrainingRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            cancel_requested=True
        )
        if not requested:
            run.refresh_from_db()
            raise Conflict(f"The training run has already {run.status}.")
    run.refresh_from_db()
    return run


def training_runs_sweep(*, stale_after: timedelta | None = None) -> list[int]:
    """Runs whose worker stopped heart-beating: requeue once, then fail with a reason."""
    stale_after = stale_after or heartbeat_stale_after()
    cutoff = timezone.now() - stale_after
    swept = []
    stale = TrainingRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff)
    for run in stale:
        reason = (
            f"The worker stopped responding during {run.stage} "
            f"(no heartbeat for {int(stale_after.total_seconds())} s)."
        )
        if run.attempts < MAX_ATTEMPTS and not run.cancel_requested:
            changed = TrainingRun.objects.filter(
                pk=run.pk, status=RunStatus.RUNNING, heartbeat_at__lt=cutoff
            ).update(status=RunStatus.QUEUED, stage="requeued", error=f"{reason} Retrying.")
            if changed:
                dispatch.training_run_queue(run.pk)
        else:
            final = RunStatus.CANCELLED if run.cancel_requested else RunStatus.FAILED
            changed = TrainingRun.objects.filter(
                pk=run.pk, status=RunStatus.RUNNING, heartbeat_at__lt=cutoff
            ).update(status=final, error=reason, finished_at=timezone.now())
        if changed:
            logger.warning("training run %s swept: %s", run.pk, reason)
            swept.append(run.pk)
            training_run_announce(run.pk)
    return swept
