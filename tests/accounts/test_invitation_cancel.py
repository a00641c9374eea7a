"""Owners cancel pending invitations from the organization page: the link then admits nobody
and says why; only those who may invite (owners) may cancel, and an accepted invitation stays
accepted."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client

from accounts.models import Invitation, Membership
from tests.factories import Tenants, dashboard_client, mails_sent, user_make

pytestmark = pytest.mark.django_db


def _invite(
    tenants: Tenants, email: str = "new@example.com", role: str = "admin"
) -> tuple[Invitation, str]:
    """An invitation the owner sent from the dashboard, and its accept link's path."""
    owner = dashboard_client(tenants.owner, tenants.organization)
    with mails_sent():
        owner.post("/dashboard/organization/", {"email": email, "role": role})
    match = re.search(r"https?://\S+", mail.outbox[-1].body)
    assert match is not None
    path = "/" + match.group(0).split("/", 3)[3]
    sent = Invitation.objects.filter(organization=tenants.organization, email=email.lower())
    return sent.latest("pk"), path


def _invitee(email: str = "new@example.com") -> Client:
    client = Client()
    client.force_login(user_make(email))
    return client


def test_an_owner_cancels_a_pending_invitation_and_its_link_says_so(tenants: Tenants) -> None:
    invitation, accept_path = _invite(tenants)
    owner = dashboard_client(tenants.owner, tenants.organization)
    assert f"invitation-cancel-{invitation.pk}" in owner.get("/dashboard/organization/").text

    cancelled = owner.post(f"/dashboard/invitations/{invitation.pk}/cancel", follow=True)
    accepted = _invitee().post(accept_path, follow=True)

    assert cancelled.status_code == 200
    assert "Invitation to new@example.com cancelled." in cancelled.text
    assert "new@example.com" not in owner.get("/dashboard/organization/").text
    assert "was cancelled by the organization; ask an owner for a new one" in accepted.text
    assert not Membership.objects.filter(user__email="new@example.com").exists()


@pytest.mark.parametrize("who", ["admin", "member", "outsider"])
def test_only_an_owner_of_the_organization_may_cancel(tenants: Tenants, who: str) -> None:
    invitation, accept_path = _invite(tenants)
    user = getattr(tenants, who)
    organization = tenants.outsider_organization if who == "outsider" else tenants.organization

    response = dashboard_client(user, organization).post(
        f"/dashboard/invitations/{invitation.pk}/cancel"
    )

    assert response.status_code == (404 if who == "outsider" else 403)
    invitation.refresh_from_db()
    assert invitation.cancelled_at is None
    _invitee().post(accept_path)
    assert Membership.objects.filter(user__email="new@example.com").exists()


def test_an_accepted_invitation_cannot_be_cancelled(tenants: Tenants) -> None:
    invitation, accept_path = _invite(tenants)
    _invitee().post(accept_path)
    owner = dashboard_client(tenants.owner, tenants.organization)

    response = owner.post(f"/dashboard/invitations/{invitation.pk}/cancel", follow=True)

    assert "already accepted; remove the member instead" in response.text
    invitation.refresh_from_db()
    assert invitation.accepted_at is not None and invitation.cancelled_at is None
    assert Membership.objects.filter(user__email="new@example.com").exists()


def test_inviting_an_email_again_replaces_its_open_invitation(tenants: Tenants) -> None:
    """A re-invite with the same role (to resend the email) leaves one open invitation: the
    newest; the earlier link says it was replaced."""
    first, first_path = _invite(tenants, role="member")
    # Past INVITATION_RESEND_COOLDOWN_SECONDS (10 min), when the same address may be mailed again.
    Invitation.objects.filter(pk=first.pk).update(
        created_at=first.created_at - timedelta(minutes=11)
    )
    second, second_path = _invite(tenants, "New@Example.com", role="member")
    invitee = _invitee()

    replaced = invitee.post(first_path, follow=True)
    accepted = invitee.post(second_path, follow=True)

    assert "was replaced by a newer one; use the link in the latest email" in replaced.text
    assert accepted.status_code == 200
    open_ = Invitation.objects.filter(organization=tenants.organization, cancelled_at=None)
    assert list(open_.values_list("pk", flat=True)) == [second.pk] and first.pk != second.pk
    membership = Membership.objects.get(user__email="new@example.com")
    assert membership.role == "member"


def test_reinviting_with_another_role_changes_the_open_invitation_and_mails_nothing(
    tenants: Tenants,
) -> None:
    """Within the resend cooldown too: the open invitation takes the new role and its link (the
    one already mailed) admits with it. (Old code: a 429 naming the cooldown.)"""
    first, first_path = _invite(tenants, role="admin")
    owner = dashboard_client(tenants.owner, tenants.organization)

    with mails_sent():
        changed = owner.post(
            "/dashboard/organization/", {"email": "New@Example.com", "role": "member"}, follow=True
        )

    assert "now has the role member; its link (no new email) admits with it" in changed.text
    assert len(mail.outbox) == 1
    open_ = Invitation.objects.filter(organization=tenants.organization, cancelled_at=None)
    assert list(open_.values_list("pk", "role")) == [(first.pk, "member")]
    assert _invitee().post(first_path, follow=True).status_code == 200
    membership = Membership.objects.get(user__email="new@example.com")
    assert membership.role == "member"
