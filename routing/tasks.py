"""Celery entry points of routing (thin: they call the modules that do the work)."""

from __future__ import annotations

from celery import shared_task

from routing.gateway.responses_store import responses_purge as _purge
from routing.lifecycle_report import routers_promote_if_better as _promote


@shared_task(  # type: ignore[untyped-decorator]  # celery ships no type hints
    name="routing.responses_purge", acks_late=True, soft_time_limit=300, time_limit=360
)
def responses_purge() -> int:
    """Delete stored /v1/responses answers past their retention (a bounded number per run)."""
    return _purge()


@shared_task(  # type: ignore[untyped-decorator]
    name="routing.routers_promote_if_better", acks_late=True, soft_time_limit=240, time_limit=300
)
def routers_promote_if_better() -> list[int]:
    """Apply the promote-if-better rule (a bounded number of routers per run)."""
    return _promote()
