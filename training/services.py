"""Writes for training: routers, versions and training runs (start, cancel, sweep); datasets'
writes live in ``training.dataset_services`` and are re-exported here.

The body of a training run lives in ``training.execution``; Celery entry points in
``training.tasks`` only call these functions, and work is queued through ``training.dispatch``
(so this module never imports the tasks).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Organization
from routerhub.domain import Conflict, InvalidInput, NotFound
from routerhub.row_update import row_update
from routerhub.text import decimal_number
from training import dispatch
from training.dataset_services import (
    DatasetNotReady,
    dataset_attempt,
    dataset_create,
    dataset_delete,
    dataset_from_bytes,
    dataset_parse,
    dataset_refuse,
    dataset_validate,
    datasets_lock,
)
from training.models import (
    ACTIVE_STATUSES,
    Dataset,
    DatasetStatus,
    Router,
    RouterVersion,
    RunStatus,
    TrainingRun,
)
from training.prices import MAX_PRICE, price_value
from training.router_references import router_references_check
from training.run_events import training_run_announce

__all__ = [
    "DatasetNotReady",
    "dataset_attempt",
    "dataset_create",
    "dataset_delete",
    "dataset_from_bytes",
    "dataset_parse",
    "dataset_refuse",
    "dataset_validate",
    "options_validate",
    "router_create",
    "router_delete",
    "router_update",
    "training_run_cancel",
    "training_run_record",
    "training_run_start",
    "training_runs_sweep",
    "version_activate",
]

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 2


def heartbeat_stale_after() -> timedelta:
    return timedelta(seconds=float(settings.TRAINING_HEARTBEAT_STALE_SECONDS))


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


ROUTER_SETTINGS = ("slug", "name", "candidates", "default_tradeoff", "auto_activate")


def router_update(*, router: Router, changes: dict[str, Any]) -> Router:
    """Change a router's own settings: only those changed are written, on its locked row, so a
    version activated, rolled back or put in an experiment since ``router`` was read stays (a
    whole-row save of that read put the version it had back, undoing a rollback). A router
    deleted since is NotFound (a 404, not a 500)."""

    def check(locked: Router) -> None:
        if "slug" in changes and changes["slug"] != locked.slug:
            taken = Router.objects.filter(
                organization_id=locked.organization_id, slug=changes["slug"]
            )
            if taken.exists():
                raise Conflict(
                    f"A router with slug '{changes['slug']}' already exists.", param="slug"
                )
            router_references_check(
                locked, action="renaming", outcome="would lose it with the old slug"
            )

    gone = NotFound(f"No router '{router.slug}' in this organization.", param="slug")
    return row_update(router, changes=changes, fields=ROUTER_SETTINGS, check=check, gone=gone)


def router_delete(*, router: Router) -> None:
    """Delete ``router`` and, once that commits, its versions' files: a 409 while it has a run in
    progress, or while keys or pipelines name it (``router_references_check``: a router made
    later with this slug would be theirs). Checked and deleted on the locked row, so a run
    started meanwhile (its insert waits on the row) or a rename cannot slip between the two."""
    with transaction.atomic():
        locked = _router_locked(router)
        if locked.runs.filter(status__in=ACTIVE_STATUSES).exists():
            raise Conflict("A training run is in progress for this router; cancel it first.")
        router_references_check(
            locked, action="deleting", outcome="would be given any router made later with its slug"
        )
        paths = [f["path"] for v in locked.versions.all() for f in v.artifact_files.values()]
        locked.delete()
        transaction.on_commit(partial(_files_delete, paths))


def _router_locked(router: Router) -> Router:
    """``router``'s row, locked until the transaction ends; deleted since the request read it: a
    404, as the view answers."""
    locked = Router.objects.select_for_update().filter(pk=router.pk).first()
    if locked is None:
        raise NotFound(f"No router '{router.slug}' in this organization.", param="slug")
    return locked


def _files_delete(paths: list[str]) -> None:
    for path in paths:
        default_storage.delete(path)


def version_activate(*, router: Router, number: int) -> Router:
    """Make version ``number`` the one serving uses (also how a rollback is done), loaded into
    this process first thing after the commit: its first decision here reads no storage."""
    with transaction.atomic():
        locked = _router_locked(router)
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
def options_validate(
    options: dict[str, Any], candidates: list[str], organization: Organization
) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    folds = options.get("folds", 5)
    if not isinstance(folds, int) or isinstance(folds, bool) or not 2 <= folds <= 10:
        raise InvalidInput("options.folds must be an integer from 2 to 10.", param="options.folds")
    clean["folds"] = folds
    prices = options.get("prices")
    if prices is not None:
        if not isinstance(prices, dict) or any(price_value(v) is None for v in prices.values()):
            raise InvalidInput(
                f"options.prices must map model ids to numbers from 0 to {MAX_PRICE:g}.",
                param="options.prices",
            )
        missing = [c for c in candidates if c not in prices]
        if missing:
            raise InvalidInput(
                f"options.prices has no price for: {', '.join(missing)}.", param="options.prices"
            )
        clean["prices"] = {str(k): price_value(v) for k, v in prices.items()}
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
    clean = options_validate(options or {}, candidates, router.organization)
    run = training_run_record(router=router, dataset=dataset, candidates=candidates, options=clean)
    dispatch.training_run_queue(run.pk)
    return run


def training_run_record(
    *,
    router: Router,
    dataset: Dataset,
    candidates: list[str],
    options: dict[str, Any],
    stage: str = "queued",
) -> TrainingRun:
    """Record a queued run (409 while the router has one queued or running, or the organization
    has its maximum); queueing its work is the caller's."""
    try:
        with transaction.atomic():
            # Run starts of one organization take turns on its row, so the active-run count
            # below cannot be read by two requests at once; the partial unique index
            # ``one_active_run_per_router`` backs the per-router rule in any case. ``FOR NO KEY
            # UPDATE``: rows referencing the organization (usage, keys, ledger) are still written
            # meanwhile, and no FOR KEY SHARE taken by such an insert deadlocks with it.
            Organization.objects.select_for_update(no_key=True).only("pk").get(
                pk=router.organization_id
            )
            _active_runs_check(router)
            used = [dataset.pk] + ([options["test_dataset"]] if options.get("test_dataset") else [])
            if datasets_lock(used) < len(set(used)):
                raise NotFound("The dataset was deleted meanwhile.", param="dataset")
            if not router.candidates:
                router.candidates = candidates
                router.save(update_fields=["candidates"])
            return TrainingRun.objects.create(
                organization_id=router.organization_id,
                router=router,
                dataset=dataset,
                options=options,
                stage=stage,
            )
    except IntegrityError:
        _active_runs_check(router)
        raise


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
    """Cancel a queued run at once; ask a running one to stop at its next checkpoint. A retrain
    from feedback still building its dataset has that dataset refused in the same transaction
    (``feedback_build_cancelled``), so its build can neither make it ready nor train."""
    from training.feedback_jobs import BUILDING, feedback_build_cancelled

    with transaction.atomic():
        queued = TrainingRun.objects.select_for_update().filter(pk=run.pk, status=RunStatus.QUEUED)
        stage = queued.values_list("stage", flat=True).first()
        cancelled = queued.update(
            status=RunStatus.CANCELLED,
            stage="cancelled",
            finished_at=timezone.now(),
            cancel_requested=True,
        )
        if cancelled and stage == BUILDING:
            feedback_build_cancelled(run.pk)
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
