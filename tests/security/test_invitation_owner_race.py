"""An invitation carries its sender's authority until the acceptance commits: an owner's removal
never commits between the acceptance's "is the sender still an owner?" check and the new
membership's commit. ``invitation_accept`` takes the organization's owners lock (as role changes
and removals do) before its check; without it the removal committed in between, and a removed
owner's invitation to their own other address made them an owner after their removal.

The interleaving is forced: the acceptance, once its check passed, waits for the removal to
finish. Serialized, the removal waits for the acceptance's lock instead; the wait times out.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from accounts import invitations, services
from accounts.models import Invitation, Membership, Role
from tests.factories import (
    invitation_token_mailed,
    mails_sent,
    member_add,
    organization_make,
    user_make,
)

WAIT_S = 2.0


@pytest.mark.django_db(transaction=True)
def test_an_owner_removed_while_their_invitation_is_accepted_never_commits_in_between(
    monkeypatch: Any,
) -> None:
    sender = user_make()
    organization = organization_make(sender)
    member_add(organization, Role.OWNER)  # another owner: the sender may be removed
    other_address = user_make()
    with mails_sent():
        invitations.invitation_create(
            organization=organization, email=other_address.email, role=Role.OWNER, invited_by=sender
        )
    token = invitation_token_mailed(other_address.email)
    sender_membership = Membership.objects.get(organization=organization, user=sender)

    removal_done = threading.Event()
    checked = threading.Event()
    removed_in_between: list[bool] = []
    check = invitations._sender_check

    def check_then_wait(invitation: Invitation) -> None:
        check(invitation)
        checked.set()
        removed_in_between.append(removal_done.wait(timeout=WAIT_S))

    monkeypatch.setattr(invitations, "_sender_check", check_then_wait)
    outcomes: dict[str, Any] = {}

    def accept() -> None:
        try:
            outcomes["accept"] = invitations.invitation_accept(token=token, user=other_address).role
        finally:
            connection.close()

    def remove() -> None:
        try:
            checked.wait(timeout=10)
            services.membership_remove(
                organization=organization, membership_id=sender_membership.pk
            )
            outcomes["remove"] = "done"
            removal_done.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=accept), threading.Thread(target=remove)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert removed_in_between == [False]
    # Serialized as accept, then remove: both legal, in that order.
    assert outcomes == {"accept": Role.OWNER, "remove": "done"}
    assert not Membership.objects.filter(organization=organization, user=sender).exists()
