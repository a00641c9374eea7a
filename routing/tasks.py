"""Celery entry points of routing (thin: they call the modules that do the work)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from routing.gateway.responses_store import responses_purge as _purge
from routing.lifecycle_report import routers_promote_if_better as _promote
from routing.notdiamond import session_prompts_expire as _sessions_expire


@shared_task(  # type: ignore[untyped-decorator]  # celery ships no type hints
    name="routing.responses_purge", acks_late=True, soft_time_limit=300, time_limit=360
)
def responses_purge() -> int:
    """Delete stored /v1/responses answers past their retention (a bounded number per run)."""
    return _purge()


@shared_task(  # type: ignore[untyped-decorator]
    name="routing.session_prompts_expire", acks_late=True, soft_time_limit=120, time_limit=180
)
def session_prompts_expire() -> int:
    """Blank Not Diamond model-select sessions' prompts past USAGE_PROMPT_RETENTION_DAYS."""
    return _sessions_expire()


@shared_task(  # type: ignore[untyped-decorator]
    name="routing.routers_promote_if_better", acks_late=True, soft_time_limit=240, time_limit=300
)
def routers_promote_if_better() -> list[int]:
    """Apply the promote-if-better rule (a bounded number of routers per run)."""
    return _promote()


@shared_task(  # type: ignore[untyped-decorator]
    # Routed to the training queue (routerhub/celery.py). Acknowledged late and never retried
    # blindly: each delivery is counted before the feedback is read and a retrain whose build
    # keeps killing its worker is failed with the reason (training.feedback_jobs).
    name="routing.feedback_retrain_build",
    acks_late=True,
    soft_time_limit=settings.FEEDBACK_RETRAIN_TIME_LIMIT,
    time_limit=settings.FEEDBACK_RETRAIN_TIME_LIMIT + 60,
)
def feedback_retrain_build(run_id: int) -> str:
    """Build a queued retrain's dataset from the router's feedback and queue its training."""
    from routing.feedback import feedback_retrain_build as build

    return build(run_id)
