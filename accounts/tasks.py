"""Celery entry points for accounts; they only call services."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from accounts import invitation_mail


@shared_task(  # type: ignore[untyped-decorator]  # celery ships no type hints
    name="accounts.invitation_mail_send",
    bind=True,
    acks_late=True,
    # One attempt: EMAIL_TIMEOUT bounds each SMTP operation; a hung server meets the soft limit,
    # which counts as a failed attempt (retried).
    soft_time_limit=settings.INVITATION_MAIL_SOFT_TIME_LIMIT,
    time_limit=settings.INVITATION_MAIL_TIME_LIMIT,
    # Celery's count only backs up the invitation's own (mail_attempts, which also counts
    # deliveries whose worker died): it never ends the retries first.
    max_retries=settings.INVITATION_MAIL_MAX_ATTEMPTS,
)
def invitation_mail_send(self: Any, invitation_id: int, ticket: int = 0) -> str:
    """Send one invitation's email; retried with backoff on SMTP errors (the retry carries the
    same ticket), then marked failed. A task superseded by a newer queueing sends nothing. The
    first queueing publishes no ticket (``invitation_mail_queue``: the previous release's task
    took the id alone), read here as 0."""
    attempt = invitation_mail.invitation_mail_send(invitation_id=invitation_id, ticket=ticket)
    if attempt.retry_in is not None:
        raise self.retry(countdown=attempt.retry_in)
    return attempt.status


@shared_task(name="accounts.invitation_mails_stuck_requeue")  # type: ignore[untyped-decorator]
def invitation_mails_stuck_requeue() -> int:
    """Beat: queue again invitation mails whose task was lost (bounded per run)."""
    return invitation_mail.invitation_mails_stuck_requeue()
