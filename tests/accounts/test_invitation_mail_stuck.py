"""A lost invitation mail task (a broker that refused the publish at commit, an older release's
worker that dropped the task) must not leave the invitation "mail queued" for ever: a beat
sweep queues it again, bounded per run and by ``INVITATION_MAIL_MAX_ATTEMPTS`` (then failed),
and the dashboard offers "resend" for it, outside the cooldown. A role change on an invitation
no mail reached resends it; a sender who can no longer invite has no mail sent in their name."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.test import TestCase
from django.utils import timezone

from accounts.invitation_mail import invitation_mails_stuck_requeue
from accounts.models import Invitation, MailStatus, Membership, User
from tests.factories import Tenants, dashboard_client, mails_sent

pytestmark = pytest.mark.django_db


def _lost_invitation(tenants: Tenants, email: str = "new@example.com") -> Invitation:
    """An invitation whose mail task was never delivered, created 20 minutes ago."""
    owner = dashboard_client(tenants.owner, tenants.organization)
    with TestCase.captureOnCommitCallbacks():  # the task is never published: lost
        owner.post("/dashboard/organization/", {"email": email, "role": "member"})
    invitation = Invitation.objects.get(email=email)
    Invitation.objects.filter(pk=invitation.pk).update(
        created_at=timezone.now() - timedelta(minutes=20)
    )
    return invitation


def test_a_lost_mail_task_is_queued_again_by_the_sweep(tenants: Tenants, settings: Any) -> None:
    settings.INVITATION_MAIL_STUCK_SECONDS = 900
    invitation = _lost_invitation(tenants)
    fresh = _lost_invitation(tenants, "fresh@example.com")
    Invitation.objects.filter(pk=fresh.pk).update(created_at=timezone.now())

    with mails_sent():
        assert invitation_mails_stuck_requeue() == 1  # old code: no such sweep

    invitation.refresh_from_db()
    assert invitation.mail_status == MailStatus.SENT
    assert [m.to for m in mail.outbox] == [["new@example.com"]]
    fresh.refresh_from_db()
    assert fresh.mail_status == MailStatus.QUEUED  # not late yet: left alone
    with mails_sent():
        assert invitation_mails_stuck_requeue() == 0  # sent: nothing more


def test_the_sweep_is_bounded_per_run_and_by_the_attempts(tenants: Tenants, settings: Any) -> None:
    settings.INVITATION_MAIL_STUCK_SWEEP_MAX = 1
    settings.INVITATION_MAIL_MAX_ATTEMPTS = 3
    first = _lost_invitation(tenants, "a@example.com")
    second = _lost_invitation(tenants, "b@example.com")
    with TestCase.captureOnCommitCallbacks() as queued:  # lost again
        assert invitation_mails_stuck_requeue() == 1
    assert len(queued) == 1
    first.refresh_from_db()
    assert (first.mail_attempts, first.mail_status) == (1, MailStatus.QUEUED)
    later = timezone.now() + timedelta(minutes=5)  # the first queued again just now
    with TestCase.captureOnCommitCallbacks():
        assert invitation_mails_stuck_requeue(now=later) == 1  # the second one, its turn
    Invitation.objects.filter(pk=first.pk).update(mail_attempts=2)
    with TestCase.captureOnCommitCallbacks() as queued:
        assert invitation_mails_stuck_requeue(now=later + timedelta(minutes=20)) == 0
    assert queued == []
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.mail_status == MailStatus.FAILED and second.mail_attempts == 1


def test_a_stuck_mail_offers_resend_outside_the_cooldown(tenants: Tenants) -> None:
    invitation = _lost_invitation(tenants)
    owner = dashboard_client(tenants.owner, tenants.organization)
    page = owner.get("/dashboard/organization/").text
    # Old code: "mail queued" for ever, no resend button.
    assert f'id="invitation-resend-{invitation.pk}"' in page and "mail stuck" in page

    with mails_sent():
        answer = owner.post(
            "/dashboard/organization/", {"email": "new@example.com", "role": "member"}
        )
    assert answer.status_code == 302  # old code: 429, the cooldown counted the stuck one
    assert [m.to for m in mail.outbox] == [["new@example.com"]]


@pytest.mark.parametrize("state", ["failed", "stuck"])
def test_a_role_change_on_an_invitation_never_mailed_mails_it(tenants: Tenants, state: str) -> None:
    """No link reached them: the role change resends (old code: nothing sent, and the page
    said "its link (no new email) admits with it")."""
    invitation = _lost_invitation(tenants)
    if state == "failed":
        Invitation.objects.filter(pk=invitation.pk).update(
            mail_status=MailStatus.FAILED, created_at=timezone.now()
        )
    owner = dashboard_client(tenants.owner, tenants.organization)
    with mails_sent():
        answer = owner.post(
            "/dashboard/organization/", {"email": "new@example.com", "role": "admin"}, follow=True
        )
    assert "its email is on its way" in answer.text and "no new email" not in answer.text
    [message] = mail.outbox
    assert message.to == ["new@example.com"] and "as admin" in message.body
    open_ = Invitation.objects.filter(cancelled_at=None, accepted_at=None)
    assert list(open_.values_list("role", "mail_status")) == [("admin", MailStatus.SENT)]


def test_a_role_change_while_the_mail_is_on_its_way_says_the_mail_carries_it(
    tenants: Tenants,
) -> None:
    invitation = _lost_invitation(tenants)
    Invitation.objects.filter(pk=invitation.pk).update(created_at=timezone.now())
    owner = dashboard_client(tenants.owner, tenants.organization)
    with TestCase.captureOnCommitCallbacks() as queued:
        answer = owner.post(
            "/dashboard/organization/", {"email": "new@example.com", "role": "admin"}, follow=True
        )
    assert "its email, still on its way, carries it" in answer.text and queued == []
    invitation.refresh_from_db()
    assert invitation.role == "admin"


@pytest.mark.parametrize("change", ["removed", "deactivated", "demoted"])
def test_no_mail_goes_out_for_a_sender_who_can_no_longer_invite(
    tenants: Tenants, change: str
) -> None:
    owner = dashboard_client(tenants.owner, tenants.organization)
    with TestCase.captureOnCommitCallbacks() as queued:
        owner.post("/dashboard/organization/", {"email": "new@example.com", "role": "member"})
    sender = Membership.objects.filter(user=tenants.owner, organization=tenants.organization)
    if change == "removed":
        sender.delete()
    elif change == "deactivated":
        User.objects.filter(pk=tenants.owner.pk).update(is_active=False)
    else:
        sender.update(role="admin")

    with mails_sent():
        queued[0]()

    # Old code: mailed in their name; its link would then have admitted nobody.
    assert mail.outbox == []
    invitation = Invitation.objects.get(email="new@example.com")
    assert invitation.mail_status == MailStatus.FAILED
    assert "can no longer invite" in invitation.mail_error
