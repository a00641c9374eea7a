"""Celery entry points of routing (thin: they call the modules that do the work)."""

from __future__ import annotations

from celery import shared_task

from routing.gateway.responses_store import responses_purge as _purge


@shared_task(  # type: ignore[untyped-decorator]  # celery ships no type hints
    name="routing.responses_purge", acks_late=True, soft_time_limit=300, time_limit=360
)
def responses_purge() -> int:
    """Delete stored /v1/responses answers past their retention (a bounded number per run)."""
    return _purge()
