"""Invitation emails, sent by a task (``accounts.tasks``) once the invitation has committed, not
inside the owner's request.

Each delivery of the task is counted on the invitation before sending (``mail_attempts``,
``routerhub.deliveries``) and mints the link's token then: only its digest is stored, and no
token travels through the broker (the task takes the invitation's id). The newest mail's link
is the one that admits. Each queueing writes a ticket on the row (``mail_ticket``) that its task
carries; the task claims the row only while its ticket is the row's, so a task the stuck-mail
sweep superseded (still waiting in a backed-up queue when the sweep queued the mail again)
sends nothing: one mail per queued send (a redelivery of the same task, after its worker died
past the SMTP send, may send again; the newest link admits). An SMTP error (or the time limit)
is retried with backoff until ``INVITATION_MAIL_MAX_ATTEMPTS`` deliveries, a refused recipient
or an unexpected error at once; then ``mail_status`` is ``failed`` with the reason and the
dashboard offers "resend".
"""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Invitation, MailStatus, Membership, Role
from routerhub.deliveries import delivery_count
from routerhub.text import one_line

logger = logging.getLogger(__name__)

RETRY_MAX_SECONDS = 900.0


def invitation_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_sender_may_invite(invitation: Invitation) -> bool:
    """Whether whoever sent the invitation is still an active owner of its organization: its
    authority, checked when the mail is sent and again at acceptance
    (``invitations._sender_check``)."""
    return invitation.invited_by_id is not None and (
        Membership.objects.filter(
            organization_id=invitation.organization_id,
            user_id=invitation.invited_by_id,
            role=Role.OWNER,
            user__is_active=True,
        ).exists()
    )


def invitation_mail_queue(invitation_id: int, ticket: int) -> None:
    """Send the invitation's email from a worker once the current transaction commits, by a task
    carrying ``ticket``, the row's ``mail_ticket`` (written by the caller). Robust:
    a broker that refuses the task leaves the invitation ``queued`` rather than failing a
    request whose invitation has committed; ``invitation_mails_stuck_requeue`` queues it again
    (and the dashboard offers "resend") once it is ``INVITATION_MAIL_STUCK_SECONDS`` late.

    Ticket 0 (the first queueing) is published without it: during a rolling deploy a worker of
    the previous release, whose task takes only the invitation's id, runs it (with the ticket
    it raised ``TypeError``, was acknowledged, and the mail waited for the sweep); this
    release's task reads a missing ticket as 0."""
    from accounts import tasks

    args = (invitation_id,) if ticket == 0 else (invitation_id, ticket)
    transaction.on_commit(lambda: tasks.invitation_mail_send.delay(*args), robust=True)


@dataclass(frozen=True)
class MailAttempt:
    status: str  # MailStatus, or "skipped": nothing to send (sent, cancelled, accepted, expired)
    retry_in: float | None = None  # seconds: the task retries after them


def retry_delay(attempt: int) -> float:
    """Seconds before the delivery after failed attempt ``attempt`` (1-based), with jitter so
    mails failing together do not retry together."""
    base = float(settings.INVITATION_MAIL_RETRY_SECONDS)
    return float(min(base * 2 ** (attempt - 1), RETRY_MAX_SECONDS) + random.uniform(0, base))


def _pending(invitation_id: int) -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        pk=invitation_id,
        mail_status=MailStatus.QUEUED,
        accepted_at__isnull=True,
        cancelled_at__isnull=True,
        expires_at__gt=timezone.now(),
    )


def invitation_mail_send(*, invitation_id: int, ticket: int = 0) -> MailAttempt:
    """One delivery of an invitation's email by the task queued with ``ticket`` (0: the first
    queueing, and a task published by the previous release, which carried none); safe to
    deliver twice (a sent, cancelled or accepted invitation is left alone), and a superseded
    task (the row's ``mail_ticket`` moved on) sends nothing. The claim (one conditional
    ``UPDATE``) also makes the mail due now, so the sweep leaves it alone while it sends."""
    claim = _pending(invitation_id).filter(mail_ticket=ticket)
    attempt = delivery_count(claim, "mail_attempts", mail_due_at=timezone.now())
    if attempt is None:
        return MailAttempt("skipped")
    most = int(settings.INVITATION_MAIL_MAX_ATTEMPTS)
    if attempt > most:
        reason = f"gave up after {most} attempts (the worker stopped while sending)"
        return _mail_failed(invitation_id, reason)
    if not invitation_sender_may_invite(Invitation.objects.get(pk=invitation_id)):
        # Removed, demoted or deactivated since inviting: no mail goes out in their name (its
        # link would admit nobody); an owner may invite them again.
        return _mail_failed(invitation_id, "whoever sent it can no longer invite people")
    token = secrets.token_urlsafe(32)
    if not claim.update(token_digest=invitation_digest(token)):
        return MailAttempt("skipped")
    invitation = Invitation.objects.select_related("organization", "invited_by").get(
        pk=invitation_id
    )
    try:
        _send(invitation, token)
    except (OSError, SoftTimeLimitExceeded) as exc:  # smtplib.SMTPException is an OSError
        reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, smtplib.SMTPRecipientsRefused) or attempt >= most:
            return _mail_failed(invitation_id, reason)
        logger.warning("invitation %s: mail attempt %s failed (%s)", invitation_id, attempt, reason)
        retry_in = retry_delay(attempt)
        Invitation.objects.filter(pk=invitation_id).update(
            mail_error=reason[:300], mail_due_at=timezone.now() + timedelta(seconds=retry_in)
        )
        return MailAttempt(MailStatus.QUEUED, retry_in)
    except Exception as exc:  # a bug must not leave it "queued" for ever: failed, with the reason
        logger.exception("invitation %s: mail failed unexpectedly", invitation_id)
        return _mail_failed(invitation_id, type(exc).__name__)
    Invitation.objects.filter(pk=invitation_id, mail_status=MailStatus.QUEUED).update(
        mail_status=MailStatus.SENT, mail_error=""
    )
    return MailAttempt(MailStatus.SENT)


def invitation_mails_stuck_requeue(*, now: datetime | None = None) -> int:
    """Queue again the mails of open invitations still ``queued``
    ``INVITATION_MAIL_STUCK_SECONDS`` after their task was due (``mail_due_at``, else
    ``created_at``): the task was lost (a broker that refused the publish at commit, a worker of
    an older release that dropped a task it did not know). At most
    ``INVITATION_MAIL_STUCK_SWEEP_MAX`` a run; the mails queued again. The lost delivery counts
    as an attempt (``mail_attempts``), so a mail whose tasks keep being lost ends ``failed``
    (resend) after ``INVITATION_MAIL_MAX_ATTEMPTS``, as one that keeps failing does. Each gets
    a new ``mail_ticket``: a "lost" task that was only waiting in a backed-up queue is
    superseded and sends nothing when it runs."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=int(settings.INVITATION_MAIL_STUCK_SECONDS))
    rows = Invitation.objects.alias(due=Coalesce("mail_due_at", "created_at")).filter(
        due__lt=cutoff,
        mail_status=MailStatus.QUEUED,
        accepted_at__isnull=True,
        cancelled_at__isnull=True,
        expires_at__gt=now,
    )
    last = int(settings.INVITATION_MAIL_MAX_ATTEMPTS) - 1  # the lost one, then one delivery
    with transaction.atomic():
        ids = list(
            rows.order_by("pk")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[: int(settings.INVITATION_MAIL_STUCK_SWEEP_MAX)]
        )
        spent = rows.filter(pk__in=ids, mail_attempts__gte=last)
        spent.update(mail_status=MailStatus.FAILED, mail_error="the mail task was lost")
        again = list(rows.filter(pk__in=ids).values_list("pk", flat=True))
        rows.filter(pk__in=again).update(
            mail_attempts=F("mail_attempts") + 1, mail_ticket=F("mail_ticket") + 1, mail_due_at=now
        )
        tickets = Invitation.objects.filter(pk__in=again).values_list("pk", "mail_ticket")
        for invitation_id, ticket in tickets:
            invitation_mail_queue(invitation_id, ticket)
    if ids:
        logger.warning("invitations: %s lost mail tasks queued again or failed", len(ids))
    return len(again)


def _mail_failed(invitation_id: int, reason: str) -> MailAttempt:
    logger.warning("invitation %s: mail failed for good (%s)", invitation_id, reason)
    Invitation.objects.filter(pk=invitation_id, mail_status=MailStatus.QUEUED).update(
        mail_status=MailStatus.FAILED, mail_error=reason[:300]
    )
    return MailAttempt(MailStatus.FAILED)


def _send(invitation: Invitation, token: str) -> None:
    accept_url = f"{settings.SITE_URL}/invitations/{token}/"
    name = one_line(invitation.organization.name)
    sender = invitation.invited_by.email if invitation.invited_by else "An owner"
    send_mail(
        subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}Join {name}",
        message=(
            f"{sender} invited you to {name} on RouterHub as "
            f"{invitation.get_role_display().lower()}.\n\nAccept within 7 days: {accept_url}\n"
        ),
        from_email=None,
        recipient_list=[invitation.email],
    )
