"""Invitation writes that meet: an owner re-inviting an address while its invitee clicks Accept,
and invitations sent at once against the hourly limit. Each interleaving is forced by a barrier
inside the calls (tests/threads.py), not hoped for."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import OperationalError

from accounts import invitations
from accounts.models import Invitation, Membership
from routerhub.domain import RateLimited
from tests.factories import invitation_token_mailed, mails_sent, organization_make, user_make
from tests.threads import BARRIER_TIMEOUT_S, meet_after, run_at_once


@pytest.mark.django_db(transaction=True)
def test_a_reinvite_and_an_acceptance_at_once_both_complete(monkeypatch: Any) -> None:
    """The acceptance reaches the organization's lock while the re-invite holds it and is about
    to change the open invitation. Old code: the acceptance held the invitation's row and waited
    for the organization's, the re-invite the other way round: PostgreSQL's deadlock error (a
    500). Now both take the organization's row first: the re-invite commits, then the
    acceptance admits with the role it set."""
    owner, invitee = user_make(), user_make()
    organization = organization_make(owner, "Acme")
    with mails_sent():
        created = invitations.invitation_create(
            organization=organization, email=invitee.email, role="member", invited_by=owner
        )
    token = invitation_token_mailed(invitee.email)
    # Past INVITATION_RESEND_COOLDOWN_SECONDS, as the old code refused a re-invite before it.
    Invitation.objects.update(created_at=created.invitation.created_at - timedelta(minutes=11))
    barrier, accepting, lock = threading.Barrier(2), threading.local(), invitations.owners_lock

    def owners_lock(locked: Any) -> None:
        if getattr(accepting, "yes", False):  # meet the re-invite holding the lock, then wait
            barrier.wait(timeout=BARRIER_TIMEOUT_S)
            lock(locked)
        else:  # the re-invite: lock, then let the acceptance go on
            lock(locked)
            barrier.wait(timeout=BARRIER_TIMEOUT_S)

    monkeypatch.setattr(invitations, "owners_lock", owners_lock)

    def accept() -> Membership:
        accepting.yes = True
        return invitations.invitation_accept(token=token, user=invitee)

    def reinvite() -> Any:
        return invitations.invitation_create(
            organization=organization, email=invitee.email, role="admin", invited_by=owner
        )

    outcomes = run_at_once([accept, reinvite])

    assert not any(isinstance(o, OperationalError) for o in outcomes), outcomes
    assert outcomes == [None, None], outcomes
    membership = Membership.objects.get(organization=organization, user=invitee)
    assert membership.role == "admin"
    assert Invitation.objects.get(organization=organization).accepted_at is not None


@pytest.mark.django_db(transaction=True)
def test_invitations_sent_at_once_do_not_pass_the_hourly_limit(
    monkeypatch: Any, settings: Any
) -> None:
    """Each invitation counts the hour's invitations under the organization's row lock, so one
    counts the other's. (Without the lock both counted 0 and both were mailed.)"""
    settings.INVITATIONS_PER_ORGANIZATION_PER_HOUR = 1
    owner = user_make()
    organization = organization_make(owner, "Acme")
    meet_after(monkeypatch, invitations, "invitation_limits_check", 2)

    def invite(index: int) -> Any:
        return lambda: invitations.invitation_create(
            organization=organization,
            email=f"person{index}@example.com",
            role="member",
            invited_by=owner,
        )

    with mails_sent():
        outcomes = run_at_once([invite(0), invite(1)])

    assert Invitation.objects.filter(organization=organization).count() == 1
    assert len(mail.outbox) == 1
    refused = [o for o in outcomes if o is not None]
    assert len(refused) == 1 and isinstance(refused[0], RateLimited), outcomes
    assert "INVITATIONS_PER_ORGANIZATION_PER_HOUR" in refused[0].message


@pytest.mark.django_db
def test_one_person_sends_at_most_the_per_person_limit_across_organizations(
    settings: Any,
) -> None:
    settings.INVITATIONS_PER_PERSON_PER_HOUR = 2
    owner = user_make()
    first, second = organization_make(owner, "One"), organization_make(owner, "Two")
    with mails_sent():
        for organization, email in [(first, "a@example.com"), (second, "b@example.com")]:
            invitations.invitation_create(
                organization=organization, email=email, role="member", invited_by=owner
            )

    with mails_sent(), pytest.raises(RateLimited) as refused:
        invitations.invitation_create(
            organization=second, email="c@example.com", role="member", invited_by=owner
        )

    assert "INVITATIONS_PER_PERSON_PER_HOUR" in refused.value.message
    assert len(mail.outbox) == 2
    Invitation.objects.update(created_at=Invitation.objects.first().created_at - timedelta(hours=2))
    with mails_sent():
        invitations.invitation_create(
            organization=second, email="c@example.com", role="member", invited_by=owner
        )
    assert len(mail.outbox) == 3
