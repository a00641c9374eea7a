"""Invitations: an owner invites an email address to the organization (a task mails the
single-use link, ``invitation_mail``), within the sending limits (``invitation_limits``); the
invitee accepts it, or an owner cancels it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.invitation_limits import email_limit_key, invitation_limits_check, inviter_limit_check
from accounts.invitation_mail import (
    invitation_digest,
    invitation_mail_queue,
    invitation_sender_may_invite,
)
from accounts.models import Invitation, MailStatus, Membership, Organization, Role, User
from accounts.services import owners_lock
from routerhub.domain import Conflict, InvalidInput, NotFound, NotPermitted

INVITATION_LIFETIME = timedelta(days=7)


def _sender_check(invitation: Invitation) -> None:
    """An invitation carries its sender's authority, checked at acceptance as a key's is: one
    sent by an owner who was since removed, demoted or deactivated (``User.is_active`` false,
    gone as for ``key_lookup``) admits nobody (else a removed owner's invitation to their own
    other address would make them an owner again). The mail task checks it too, before
    sending."""
    if not invitation_sender_may_invite(invitation):
        raise NotPermitted(
            "Whoever sent this invitation can no longer invite people to "
            f"{invitation.organization.name}; ask an owner for a new one."
        )


@dataclass(frozen=True)
class CreatedInvitation:
    invitation: Invitation
    queued: bool  # its email queued (False: only the open invitation's role changed)


def invitation_create(
    *, organization: Organization, email: str, role: str, invited_by: User
) -> CreatedInvitation:
    """Invite ``email`` to the organization; a task emails them a single-use link once this
    commits (``accounts.invitation_mail``: the invitation's ``mail_status`` says how it went).
    The limits count here, in the request. Inviting an email that already has an open
    invitation with another role changes that invitation's role, mails nothing and needs no
    cooldown (its link, mailed or still to be, admits with the new role) — unless its mail
    failed or is stuck (``mail_stuck``): no link reached them, so it resends, as with the same
    role: the earlier links are cancelled, so one link (the newest) admits them.

    Lock order, as in every invitation path: the organization's row, then invitation rows."""
    email = email.strip().lower()
    now = timezone.now()
    with transaction.atomic():
        # The organization's row lock makes invitations sent at once count each other, and
        # orders this with an acceptance (which takes it before the invitation's row).
        owners_lock(organization)
        if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
            raise Conflict(f"{email} is already a member of {organization.name}.")
        open_ = list(_open_invitations(organization, email).select_for_update().order_by("-pk"))
        if open_ and open_[0].role != role and _mail_pending(open_[0]):
            open_[0].role = Role(role)
            open_[0].save(update_fields=["role"])
            return CreatedInvitation(open_[0], queued=False)
        invitation_limits_check(organization, email, now)
        inviter_limit_check(invited_by, now)
        _open_invitations(organization, email).update(cancelled_at=now)
        invitation = Invitation.objects.create(
            organization=organization,
            email=email,
            email_key=email_limit_key(email),
            role=Role(role),
            # A token nobody is given: the mail task mints the link's token when it sends.
            token_digest=invitation_digest(secrets.token_urlsafe(32)),
            invited_by=invited_by,
            expires_at=now + INVITATION_LIFETIME,
        )
        invitation_mail_queue(invitation.pk, invitation.mail_ticket)
    return CreatedInvitation(invitation, queued=True)


def _mail_pending(invitation: Invitation) -> bool:
    """Its mail was sent, or is on its way (queued, not stuck): it carries a role change."""
    return invitation.mail_status == MailStatus.SENT or (
        invitation.mail_status == MailStatus.QUEUED and not invitation.mail_stuck
    )


def _open_invitations(organization: Organization, email: str) -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        organization=organization,
        email__iexact=email,
        accepted_at__isnull=True,
        cancelled_at__isnull=True,
        expires_at__gt=timezone.now(),
    )


def _cancelled(invitation: Invitation) -> NotPermitted:
    """Why a cancelled invitation's link admits nobody: replaced by a newer invitation to the
    same email (a re-invite), or cancelled by an owner."""
    if _open_invitations(invitation.organization, invitation.email).exists():
        return NotPermitted(
            f"This invitation to {invitation.organization.name} was replaced by a newer one; "
            f"use the link in the latest email to {invitation.email}."
        )
    return NotPermitted(
        f"This invitation to {invitation.organization.name} was cancelled by the "
        "organization; ask an owner for a new one."
    )


def invitation_accept(*, token: str, user: User) -> Membership:
    """Join with the invitation's role. Locks, in the one order every invitation path takes:
    the organization's row (read unlocked from the invitation first), then the invitation's row,
    re-read and re-checked under both. (The invitation's row first deadlocked with a re-invite,
    which holds the organization's row while it cancels or changes the open invitations.)"""
    digest = invitation_digest(token)
    with transaction.atomic():
        found = Invitation.objects.filter(token_digest=digest).select_related("organization")
        first = found.first()
        if first is not None:
            # The owners lock: the sender cannot be removed or demoted between the check below
            # and this membership's commit, nor a re-invite change the invitation meanwhile.
            owners_lock(first.organization)
        invitation = found.select_for_update(of=("self",)).first()
        if invitation is not None and invitation.cancelled_at is not None:
            raise _cancelled(invitation)
        if invitation is None or not invitation.is_open:
            raise NotFound("This invitation does not exist, was used, or has expired.")
        if invitation.email.lower() != user.email.lower():
            raise InvalidInput(f"This invitation was sent to {invitation.email}; sign in as them.")
        _sender_check(invitation)
        invitation.accepted_at = timezone.now()
        invitation.save(update_fields=["accepted_at"])
        try:
            with transaction.atomic():
                return Membership.objects.create(
                    user=user, organization=invitation.organization, role=invitation.role
                )
        except IntegrityError:
            return Membership.objects.get(user=user, organization=invitation.organization)


def invitation_cancel(*, organization: Organization, invitation_id: int) -> Invitation:
    """Cancel the organization's pending invitation: its link admits nobody from now on. The
    row lock orders it with ``invitation_accept``: an invitation is either accepted or
    cancelled, never both. An accepted one is a 409 (remove the member instead); cancelling
    a cancelled one again changes nothing."""
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update()
            .filter(organization=organization, pk=invitation_id)
            .first()
        )
        if invitation is None:
            raise NotFound("No such invitation in this organization.")
        if invitation.accepted_at is not None:
            raise Conflict(
                f"The invitation to {invitation.email} was already accepted; remove the "
                "member instead."
            )
        if invitation.cancelled_at is None:
            invitation.cancelled_at = timezone.now()
            invitation.save(update_fields=["cancelled_at"])
        return invitation
