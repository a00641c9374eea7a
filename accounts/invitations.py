"""Invitations: an owner invites an email address to the organization with a single-use link,
within the sending limits; the invitee accepts it (or an owner cancels it)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Invitation, Membership, Organization, Role, User
from accounts.services import owners_lock
from routerhub.domain import Conflict, InvalidInput, NotFound, NotPermitted, RateLimited
from routerhub.text import one_line

INVITATION_LIFETIME = timedelta(days=7)


def _sender_check(invitation: Invitation) -> None:
    """An invitation carries its sender's authority, checked at acceptance as a key's is: one
    sent by an owner who was since removed, demoted or deactivated (``User.is_active`` false,
    gone as for ``key_lookup``) admits nobody (else a removed owner's invitation to their own
    other address would make them an owner again)."""
    senders = Membership.objects.filter(
        organization_id=invitation.organization_id, role=Role.OWNER, user__is_active=True
    )
    if (
        invitation.invited_by_id is None
        or not senders.filter(user_id=invitation.invited_by_id).exists()
    ):
        raise NotPermitted(
            "Whoever sent this invitation can no longer invite people to "
            f"{invitation.organization.name}; ask an owner for a new one."
        )


def _invitation_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedInvitation:
    invitation: Invitation
    accept_url: str  # "" when nothing was mailed (only the open invitation's role changed)


def invitation_create(
    *, organization: Organization, email: str, role: str, invited_by: User
) -> CreatedInvitation:
    """Invite ``email`` to the organization and email them a single-use link. Inviting an email
    that already has an open invitation with another role changes that invitation's role, mails
    nothing and needs no cooldown (its link admits with the new role); with the same role it
    resends: the earlier links are cancelled, so one link (the newest) admits them.

    Lock order, as in every invitation path: the organization's row, then invitation rows."""
    email = email.strip().lower()
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        # The organization's row lock makes invitations sent at once count each other, and
        # orders this with an acceptance (which takes it before the invitation's row).
        owners_lock(organization)
        if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
            raise Conflict(f"{email} is already a member of {organization.name}.")
        open_ = list(_open_invitations(organization, email).select_for_update().order_by("-pk"))
        if open_ and open_[0].role != role:
            open_[0].role = Role(role)
            open_[0].save(update_fields=["role"])
            return CreatedInvitation(open_[0], "")
        _invitation_limits_check(organization, email, now)
        _inviter_limit_check(invited_by, now)
        _open_invitations(organization, email).update(cancelled_at=now)
        invitation = Invitation.objects.create(
            organization=organization,
            email=email,
            role=Role(role),
            token_digest=_invitation_digest(token),
            invited_by=invited_by,
            expires_at=now + INVITATION_LIFETIME,
        )
    accept_url = f"{settings.SITE_URL}/invitations/{token}/"
    name = one_line(organization.name)
    send_mail(
        subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}Join {name}",
        message=(
            f"{invited_by.email} invited you to {name} on RouterHub as "
            f"{invitation.get_role_display().lower()}.\n\nAccept within 7 days: {accept_url}\n"
        ),
        from_email=None,
        recipient_list=[email],
    )
    return CreatedInvitation(invitation, accept_url)


def _invitation_limits_check(organization: Organization, email: str, now: datetime) -> None:
    """Refuse an invitation email the platform's sender should not send: the same address again
    within ``INVITATION_RESEND_COOLDOWN_SECONDS`` (429), more than
    ``INVITATIONS_PER_ORGANIZATION_PER_HOUR`` (429), or past
    ``INVITATIONS_OPEN_PER_ORGANIZATION_MAX`` open ones (409). Without them an owner mails any
    address, any number of times, under an organization name they chose."""
    sent = Invitation.objects.filter(organization=organization)
    cooldown = timedelta(seconds=settings.INVITATION_RESEND_COOLDOWN_SECONDS)
    last = (
        sent.filter(email__iexact=email, created_at__gt=now - cooldown)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if last is not None:
        wait = int((last + cooldown - now).total_seconds()) + 1
        raise RateLimited(
            f"An invitation was emailed to {email} {int((now - last).total_seconds()) // 60} "
            f"min ago; send it again in {(wait + 59) // 60} min "
            "(INVITATION_RESEND_COOLDOWN_SECONDS), or ask them to check their inbox.",
            param="email",
            headers={"Retry-After": str(wait)},
        )
    per_hour = settings.INVITATIONS_PER_ORGANIZATION_PER_HOUR
    if sent.filter(created_at__gt=now - timedelta(hours=1)).count() >= per_hour:
        raise RateLimited(
            f"{organization.name} has sent {per_hour} invitations in the last hour, the most "
            "allowed (INVITATIONS_PER_ORGANIZATION_PER_HOUR); try again later.",
            param="email",
            headers={"Retry-After": "3600"},
        )
    open_max = settings.INVITATIONS_OPEN_PER_ORGANIZATION_MAX
    still_open = sent.filter(
        accepted_at__isnull=True, cancelled_at__isnull=True, expires_at__gt=now
    )
    if still_open.exclude(email__iexact=email).count() >= open_max:
        raise Conflict(
            f"{organization.name} has {open_max} open invitations, the most allowed "
            "(INVITATIONS_OPEN_PER_ORGANIZATION_MAX); cancel some before inviting more.",
            param="email",
        )


def _inviter_limit_check(invited_by: User, now: datetime) -> None:
    """One person sends at most ``INVITATIONS_PER_PERSON_PER_HOUR`` invitation emails an hour,
    all their organizations together (they may own ``ORGANIZATIONS_PER_PERSON_MAX``). Counted
    under their row's lock (taken after the organization's, as nowhere the other way), so
    invitations they send at once from two organizations count each other."""
    list(User.objects.select_for_update(no_key=True).filter(pk=invited_by.pk).values_list("pk"))
    per_hour = settings.INVITATIONS_PER_PERSON_PER_HOUR
    sent = Invitation.objects.filter(invited_by=invited_by, created_at__gt=now - timedelta(hours=1))
    if sent.count() >= per_hour:
        raise RateLimited(
            f"You have sent {per_hour} invitations in the last hour, all your organizations "
            "together, the most allowed (INVITATIONS_PER_PERSON_PER_HOUR); try again later.",
            param="email",
            headers={"Retry-After": "3600"},
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
    digest = _invitation_digest(token)
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
