"""Invitation emails are sent by a task after the invitation commits, not inside the owner's
request: the request answers with the invitation ``queued`` and nothing sent; the task (eager
here, as a worker runs it) sends it through the configured backend; an SMTP server that refuses
is retried with backoff, a bounded number of deliveries, then the invitation is ``failed`` and
the dashboard offers "resend"; the limits still count in the request."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.test import Client, TestCase

from accounts import invitations
from accounts.models import Invitation, MailStatus, Membership
from accounts.tasks import invitation_mail_send
from tests.celery_conf import celery_conf
from tests.factories import (
    Tenants,
    dashboard_client,
    invitation_token_mailed,
    mails_sent,
    organization_make,
    user_make,
)
from tests.processes import training_workers, until

pytestmark = pytest.mark.django_db


class SmtpServer:
    """A minimal SMTP server on a local port: its first ``refusals`` connections get
    ``421 try again later`` (a transient SMTP error), the rest deliver; ``received`` holds the
    delivered messages' data."""

    def __init__(self, refusals: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.refusals, self.connections = refusals, 0
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                self.connections += 1
                if self.connections <= self.refusals:
                    conn.sendall(b"421 4.3.2 Service not available, try again later\r\n")
                    continue
                self._session(conn, lines)

    def _session(self, conn: socket.socket, lines: Any) -> None:
        conn.sendall(b"220 test ESMTP\r\n")
        for line in lines:
            verb = line[:4].upper()
            if verb == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                data = b""
                for body_line in lines:
                    if body_line == b".\r\n":
                        break
                    data += body_line
                self.received.append(data)
                conn.sendall(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:  # EHLO, HELO, MAIL, RCPT, RSET, NOOP
                conn.sendall(b"250 ok\r\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def smtp(settings: Any) -> Iterator[SmtpServer]:
    server = SmtpServer(refusals=2)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield server
    server.close()


def _invite(tenants: Tenants, email: str = "new@example.com") -> Any:
    owner = dashboard_client(tenants.owner, tenants.organization)
    return owner.post("/dashboard/organization/", {"email": email, "role": "member"}, follow=True)


def _page(tenants: Tenants) -> str:
    return (
        dashboard_client(tenants.owner, tenants.organization).get("/dashboard/organization/").text
    )


def test_the_request_answers_without_sending_and_the_task_sends_after_commit(
    tenants: Tenants,
) -> None:
    with celery_conf(task_always_eager=True), TestCase.captureOnCommitCallbacks() as queued:
        answer = _invite(tenants)
        invitation = Invitation.objects.get(email="new@example.com")

        # Old code: mailed inside the request (one message in the outbox here).
        assert answer.status_code == 200 and "its email is on its way" in answer.text
        assert mail.outbox == []
        assert invitation.mail_status == MailStatus.QUEUED
        assert "mail queued" in _page(tenants)
    assert len(queued) == 1  # queued on commit, not sent in the transaction

    with mails_sent():
        queued[0]()

    invitation.refresh_from_db()
    assert (invitation.mail_status, invitation.mail_attempts) == (MailStatus.SENT, 1)
    [message] = mail.outbox
    assert message.to == ["new@example.com"] and "invited you to Acme" in message.body
    assert "mail queued" not in _page(tenants)
    invitee = Client()
    invitee.force_login(user_make("new@example.com"))
    token = invitation_token_mailed("new@example.com")
    assert invitee.post(f"/invitations/{token}/").status_code == 302
    assert Membership.objects.filter(user__email="new@example.com").exists()


def test_a_task_delivered_again_after_sending_sends_nothing(tenants: Tenants) -> None:
    with mails_sent():
        _invite(tenants)
    invitation = Invitation.objects.get(email="new@example.com")

    with celery_conf(task_always_eager=True):
        assert invitation_mail_send.delay(invitation.pk).get() == "skipped"

    assert len(mail.outbox) == 1


def test_an_smtp_refusal_is_retried_with_backoff_then_sent(
    tenants: Tenants, smtp: SmtpServer, settings: Any
) -> None:
    settings.INVITATION_MAIL_MAX_ATTEMPTS = 3

    with mails_sent():
        _invite(tenants)

    invitation = Invitation.objects.get(email="new@example.com")
    assert (invitation.mail_status, invitation.mail_attempts) == (MailStatus.SENT, 3)
    assert smtp.connections == 3 and len(smtp.received) == 1
    assert b"invited you to Acme" in smtp.received[0]


def test_an_smtp_failure_past_the_attempts_marks_the_invitation_failed_and_offers_resend(
    tenants: Tenants, smtp: SmtpServer, settings: Any
) -> None:
    settings.INVITATION_MAIL_MAX_ATTEMPTS = 2  # the server refuses twice

    with mails_sent():
        _invite(tenants)

    failed = Invitation.objects.get(email="new@example.com")
    assert (failed.mail_status, failed.mail_attempts) == (MailStatus.FAILED, 2)
    assert "SMTPConnectError" in failed.mail_error and smtp.received == []
    page = _page(tenants)
    assert "mail failed" in page and f"invitation-resend-{failed.pk}" in page

    # Resend: the failed mail does not hold the address's cooldown; the server now delivers.
    with mails_sent():
        resent = _invite(tenants)

    assert "INVITATION_RESEND_COOLDOWN_SECONDS" not in resent.text
    newest = Invitation.objects.filter(email="new@example.com").latest("pk")
    assert newest.pk != failed.pk and newest.mail_status == MailStatus.SENT
    assert len(smtp.received) == 1 and "mail failed" not in _page(tenants)


def test_a_mail_whose_deliveries_keep_dying_is_given_up(tenants: Tenants, settings: Any) -> None:
    """acks_late redelivers a task whose worker died; each delivery counts before sending, so
    past INVITATION_MAIL_MAX_ATTEMPTS the invitation is failed instead of redelivered forever."""
    settings.INVITATION_MAIL_MAX_ATTEMPTS = 3
    with TestCase.captureOnCommitCallbacks():
        _invite(tenants)
    invitation = Invitation.objects.get(email="new@example.com")
    Invitation.objects.filter(pk=invitation.pk).update(mail_attempts=3)  # three deliveries died

    with celery_conf(task_always_eager=True):
        assert invitation_mail_send.delay(invitation.pk).get() == MailStatus.FAILED

    invitation.refresh_from_db()
    assert invitation.mail_status == MailStatus.FAILED and mail.outbox == []
    assert "gave up after 3 attempts" in invitation.mail_error


def test_the_limits_count_invitations_whose_mail_is_not_sent_yet(
    tenants: Tenants, settings: Any
) -> None:
    settings.INVITATIONS_PER_ORGANIZATION_PER_HOUR = 2
    with TestCase.captureOnCommitCallbacks():  # no task runs: every mail still queued
        _invite(tenants, "a@example.com")
        _invite(tenants, "b@example.com")
        refused = _invite(tenants, "c@example.com")

    assert "INVITATIONS_PER_ORGANIZATION_PER_HOUR" in refused.text
    assert not Invitation.objects.filter(email="c@example.com").exists()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_sends_the_mail_queued_on_commit_retrying_a_refusal(
    media: Path, tmp_path: Path
) -> None:
    """Through the broker: the invitation commits, its task goes to the ``default`` queue, and
    a Celery worker (its own process) sends it to an SMTP server that refuses the first
    connection, after the retry's countdown."""
    from routerhub.celery import app

    server = SmtpServer(refusals=1)
    owner = user_make()
    organization = organization_make(owner, "Acme")
    with app.connection_for_write() as connection:  # no earlier test's task for this worker
        connection.default_channel.queue_purge("default")
    with training_workers(
        media,
        tmp_path,
        queue="default",
        EMAIL_URL=f"smtp://127.0.0.1:{server.port}",
        INVITATION_MAIL_RETRY_SECONDS="1",
    ) as start:
        with celery_conf(task_always_eager=False):
            invitations.invitation_create(
                organization=organization, email="new@example.com", role="member", invited_by=owner
            )
        invitation = Invitation.objects.get()
        assert invitation.mail_status == MailStatus.QUEUED and server.connections == 0

        start()
        until(
            lambda: Invitation.objects.get().mail_status != MailStatus.QUEUED,
            25,
            "the worker to send the invitation",
        )
    server.close()

    invitation.refresh_from_db()
    assert (invitation.mail_status, invitation.mail_attempts) == (MailStatus.SENT, 2)
    assert server.connections == 2 and len(server.received) == 1


def test_a_delivery_again_mints_a_new_link_and_the_earlier_one_stops_admitting(
    tenants: Tenants,
) -> None:
    """A task delivered again after it mailed (its worker died before marking it sent; the same
    queued send, so the same ``mail_ticket``) mails a new link: the newest mail admits, the
    earlier link no longer does. Written after the behaviour (it passed on the code before it);
    it fails when a delivery keeps the earlier token's digest instead of storing its own."""
    with mails_sent():
        _invite(tenants)
    invitation = Invitation.objects.get(email="new@example.com")
    first = invitation_token_mailed("new@example.com")
    Invitation.objects.filter(pk=invitation.pk).update(mail_status=MailStatus.QUEUED)

    with mails_sent():
        invitation_mail_send.delay(invitation.pk)

    second = invitation_token_mailed("new@example.com")
    assert len(mail.outbox) == 2 and first != second
    invitee = Client()
    invitee.force_login(user_make("new@example.com"))
    assert "does not exist" in invitee.post(f"/invitations/{first}/", follow=True).text
    assert not Membership.objects.filter(user__email="new@example.com").exists()
    assert invitee.post(f"/invitations/{second}/").status_code == 302
    assert Membership.objects.filter(user__email="new@example.com").exists()
