"""An invitation sent by an owner an operator has since deactivated (``User.is_active`` false)
admits nobody: a deactivated person is gone, as their keys are (``accounts.key_lookup``). Before,
only a removal or demotion was checked, and the deactivated owner's invitation to another of
their addresses still made that address an owner."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from accounts.models import Invitation, Membership, Role
from tests.factories import dashboard_client, mails_sent, member_add, organization_make, user_make

pytestmark = pytest.mark.django_db


def test_a_deactivated_senders_invitation_admits_nobody() -> None:
    organization = organization_make(user_make(), "Team")
    sender = member_add(organization, Role.OWNER)
    with mails_sent():
        dashboard_client(sender, organization).post(
            "/dashboard/organization/", {"email": "alt@example.com", "role": "owner"}
        )
    link = re.search(r"https?://\S+", str(mail.outbox[-1].body))
    assert link is not None
    accept_path = "/invitations/" + link.group(0).rstrip("/").rsplit("/", 1)[-1] + "/"
    sender.is_active = False
    sender.save(update_fields=["is_active"])

    alt = Client()
    alt.force_login(user_make("alt@example.com"))
    answer = alt.post(accept_path, follow=True)

    assert not Membership.objects.filter(user__email="alt@example.com").exists()
    assert Invitation.objects.get(email="alt@example.com").accepted_at is None
    assert "can no longer invite" in answer.content.decode()
