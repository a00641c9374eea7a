"""One mail per queued send: when the default queue backs up past
``INVITATION_MAIL_STUCK_SECONDS``, the stuck-mail sweep queues a mail again while its first task
is still waiting; the two tasks may then run at once (two workers). Each queueing writes a
ticket on the row (``mail_ticket``) that its task carries, and a task claims the row only while
its ticket is the row's: the superseded one sends nothing, so one mail (one link) goes out.
Old code: both sent, two mails with two tokens. The claim also makes the mail due now, so a
sweep running while a task sends does not take that mail for lost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from celery.signals import before_task_publish
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.core.mail.message import EmailMessage
from django.test import Client, TestCase
from django.utils import timezone

from accounts.invitation_mail import invitation_mails_stuck_requeue
from accounts.models import Invitation, MailStatus, Membership
from tests.celery_conf import celery_conf
from tests.factories import Tenants, dashboard_client, invitation_token_mailed, user_make

pytestmark = pytest.mark.django_db


class OverlappingBackend(EmailBackend):
    """The locmem backend; while the first message is being sent, ``meanwhile`` runs (another
    worker running the other task at that moment), once."""

    meanwhile: ClassVar[list[Callable[[], Any]]] = []

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        while OverlappingBackend.meanwhile:
            OverlappingBackend.meanwhile.pop()()
        return super().send_messages(email_messages)


def _two_tasks_for_one_invitation(tenants: Tenants) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """The invitation's first task, still waiting in a backed-up queue 20 minutes on, and the
    task the sweep queued again for it (neither has run)."""
    owner = dashboard_client(tenants.owner, tenants.organization)
    with TestCase.captureOnCommitCallbacks() as first:
        owner.post("/dashboard/organization/", {"email": "new@example.com", "role": "member"})
    Invitation.objects.update(created_at=timezone.now() - timedelta(minutes=20))
    with TestCase.captureOnCommitCallbacks() as again:
        assert invitation_mails_stuck_requeue() == 1
    return first[0], again[0]


@pytest.mark.parametrize("order", ["stale task runs first", "swept task sends first"])
def test_a_mail_queued_again_while_its_first_task_waits_goes_out_once(
    tenants: Tenants, settings: Any, order: str
) -> None:
    """ "stale task runs first": the superseded first task runs before the swept one and sends
    nothing (no overlap: its claim fails before any SMTP); "swept task sends first": the stale
    task runs while the swept one is sending (the overlap) and sends nothing either."""
    settings.INVITATION_MAIL_STUCK_SECONDS = 900
    settings.EMAIL_BACKEND = f"{__name__}.OverlappingBackend"
    first, swept = _two_tasks_for_one_invitation(tenants)
    running, meanwhile = (first, swept) if order == "stale task runs first" else (swept, first)

    OverlappingBackend.meanwhile[:] = [meanwhile]
    with celery_conf(task_always_eager=True):
        running()
        OverlappingBackend.meanwhile.clear()  # it had nothing to send: the other runs after
        meanwhile()

    assert len(mail.outbox) == 1  # old code: 2, each with its own link
    invitation = Invitation.objects.get()
    assert invitation.mail_status == MailStatus.SENT
    invitee = Client()
    invitee.force_login(user_make("new@example.com"))
    token = invitation_token_mailed("new@example.com")
    assert invitee.post(f"/invitations/{token}/").status_code == 302
    assert Membership.objects.filter(user__email="new@example.com").exists()


def test_the_sweep_leaves_alone_a_mail_its_task_is_sending(tenants: Tenants, settings: Any) -> None:
    """The claim makes the mail due now (``mail_due_at``): the sweep, running while the task is
    talking to the SMTP server about an invitation made 20 minutes ago (past
    ``INVITATION_MAIL_STUCK_SECONDS``), does not take it for lost. Without that: the sweep
    queued it again and its task, the ticket now its own, sent a second mail."""
    settings.INVITATION_MAIL_STUCK_SECONDS = 900
    settings.EMAIL_BACKEND = f"{__name__}.OverlappingBackend"
    owner = dashboard_client(tenants.owner, tenants.organization)
    with TestCase.captureOnCommitCallbacks() as queued:
        owner.post("/dashboard/organization/", {"email": "new@example.com", "role": "member"})
    Invitation.objects.update(created_at=timezone.now() - timedelta(minutes=20))
    swept: list[int] = []

    def sweep_then_its_tasks() -> None:
        with TestCase.captureOnCommitCallbacks() as again:
            swept.append(invitation_mails_stuck_requeue())
        for task in again:
            task()

    OverlappingBackend.meanwhile[:] = [sweep_then_its_tasks]
    with celery_conf(task_always_eager=True):
        queued[0]()

    assert swept == [0]
    assert [m.to for m in mail.outbox] == [["new@example.com"]]  # without it: two
    assert Invitation.objects.get().mail_status == MailStatus.SENT


def test_a_superseded_task_does_nothing_and_the_swept_one_still_sends(tenants: Tenants) -> None:
    first, swept = _two_tasks_for_one_invitation(tenants)
    invitation = Invitation.objects.get()
    assert (invitation.mail_ticket, invitation.mail_attempts) == (1, 1)

    with celery_conf(task_always_eager=True):
        first()  # the stale task: its ticket lost, it neither counts, mints nor sends
        invitation.refresh_from_db()
        assert (invitation.mail_attempts, mail.outbox) == (1, [])
        assert invitation.mail_status == MailStatus.QUEUED
        swept()

    invitation.refresh_from_db()
    assert (invitation.mail_status, invitation.mail_attempts) == (MailStatus.SENT, 2)
    assert [m.to for m in mail.outbox] == [["new@example.com"]]


def test_the_first_queueing_publishes_only_the_invitation_id(
    tenants: Tenants, settings: Any
) -> None:
    """Rolling deploy: a worker of the previous release runs ``invitation_mail_send(invitation_id)``
    and raised ``TypeError`` on a ticket it does not take (acknowledged: the mail waited for the
    sweep). The first queueing (ticket 0) publishes the id alone, which both releases' tasks
    take; a queueing by the sweep carries its ticket. Old code: ``[id, 0]`` first."""
    settings.INVITATION_MAIL_STUCK_SECONDS = 900
    published: list[tuple[str, list[Any]]] = []

    def record(sender: str, body: Any, **_: Any) -> None:
        published.append((sender, list(body[0])))  # Celery's message protocol 2: (args, ...)

    before_task_publish.connect(record, weak=False)
    try:
        owner = dashboard_client(tenants.owner, tenants.organization)
        with TestCase.captureOnCommitCallbacks(execute=True):
            owner.post("/dashboard/organization/", {"email": "new@example.com", "role": "member"})
        invitation = Invitation.objects.get()
        Invitation.objects.update(created_at=timezone.now() - timedelta(minutes=20))
        with TestCase.captureOnCommitCallbacks(execute=True):
            assert invitation_mails_stuck_requeue() == 1
    finally:
        before_task_publish.disconnect(record)

    sent = "accounts.invitation_mail_send"
    assert published == [(sent, [invitation.pk]), (sent, [invitation.pk, 1])]
