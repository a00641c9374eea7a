"""Webhook events of training runs: ``training.finished`` and ``training.failed``."""

from __future__ import annotations

import logging
from typing import Any

from training.models import RunStatus, TrainingRun
from webhooks.models import WebhookEvent
from webhooks.services import webhook_event_emit

logger = logging.getLogger(__name__)


def _run_data(run: TrainingRun) -> dict[str, Any]:
    data: dict[str, Any] = {
        "training_run": run.pk,
        "router": run.router.slug,
        "dataset": run.dataset_id,
        "status": run.status,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }
    if run.status == RunStatus.SUCCEEDED and run.version is not None:
        data["version"] = run.version.number
        data["activated"] = run.router.active_version_id == run.version.pk
        data["metrics"] = run.version.metrics
    else:
        data["error"] = run.error
    return data


def training_run_announce(run_id: int) -> None:
    """Emit the webhook event of a run that ended (nothing for a cancelled or running one).
    A webhook problem is logged, never raised: the run's outcome is already recorded."""
    try:
        run = TrainingRun.objects.select_related("router", "version").get(pk=run_id)
        event = {
            RunStatus.SUCCEEDED: WebhookEvent.TRAINING_FINISHED,
            RunStatus.FAILED: WebhookEvent.TRAINING_FAILED,
        }.get(RunStatus(run.status))
        if event is not None:
            webhook_event_emit(run.organization_id, event, _run_data(run))
    except Exception:
        logger.exception("webhook event for training run %s could not be emitted", run_id)
