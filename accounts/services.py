"""Writes for accounts: organizations, memberships, invitations and API keys."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.text import slugify

from accounts.keys import key_cache_clear, key_mint
from accounts.models import (
    RESERVED_ORGANIZATION_SLUGS,
    ApiKey,
    Invitation,
    KeyScope,
    Membership,
    Organization,
    Role,
    User,
)
from routerhub.domain import Conflict, InvalidInput, NotFound, NotPermitted, RateLimited
from routerhub.text import one_line

INVITATION_LIFETIME = timedelta(days=7)


def _unique_slug(base: str) -> str:
    root = slugify(base)[:40] or "org"
    slug = root
    # A reserved slug (the platform's) gets a suffix like a taken one.
    while slug in RESERVED_ORGANIZATION_SLUGS or Organization.objects.filter(slug=slug).exists():
        slug = f"{root}-{secrets.token_hex(3)}"
    return slug


@transaction.atomic
def organization_create(*, name: str, owner: User, personal: bool = False) -> Organization:
    """Create an organization with ``owner`` as its creator and first owner, then run the
    creation hooks. A person creates at most ``ORGANIZATIONS_PER_PERSON_MAX`` (``NotPermitted``
    past it; their row is locked first, so organizations created at once cannot pass the count
    together). Organizations they were invited to or promoted in are not counted: a consultant
    owning ten clients' organizations still creates their own."""
    list(User.objects.select_for_update().filter(pk=owner.pk).values_list("pk"))
    created = Organization.objects.filter(created_by=owner).count()
    if created >= settings.ORGANIZATIONS_PER_PERSON_MAX:
        raise NotPermitted(
            f"You have created {created} organizations, the most one person may "
            "(ORGANIZATIONS_PER_PERSON_MAX); an operator can raise it."
        )
    organization = Organization.objects.create(
        slug=_unique_slug(name), name=name, is_personal=personal, created_by=owner
    )
    Membership.objects.create(user=owner, organization=organization, role=Role.OWNER)
    for dotted in settings.ORGANIZATION_CREATED_HOOKS:  # e.g. billing's starter credits
        import_string(dotted)(organization=organization, owner=owner)
    return organization


def organization_create_personal(*, user: User) -> Organization:
    local_part = user.email.split("@")[0]
    return organization_create(name=f"{local_part}'s organization", owner=user, personal=True)


def membership_set_role(*, organization: Organization, membership_id: int, role: str) -> Membership:
    """Change a member's role; their API keys act with the new role (at most the one they were
    created with) in every worker within ``API_KEY_CACHE_TTL`` (``keys.key_role``)."""
    with transaction.atomic():
        _owners_lock(organization)
        membership = (
            Membership.objects.select_for_update()
            .filter(organization=organization, pk=membership_id)
            .first()
        )
        if membership is None:
            raise NotFound("No such member in this organization.")
        if membership.role == Role.OWNER and role != Role.OWNER:
            _ensure_another_owner(organization, membership)
        membership.role = Role(role)
        membership.save(update_fields=["role"])
    key_cache_clear()  # this process sees the new role now; others within API_KEY_CACHE_TTL
    return membership


def membership_remove(*, organization: Organization, membership_id: int) -> None:
    """Remove a member and revoke every API key they created in the organization (inference keys
    too: a key never carries more authority than its creator)."""
    with transaction.atomic():
        _owners_lock(organization)
        membership = (
            Membership.objects.select_for_update()
            .filter(organization=organization, pk=membership_id)
            .first()
        )
        if membership is None:
            raise NotFound("No such member in this organization.")
        if membership.role == Role.OWNER:
            _ensure_another_owner(organization, membership)
        membership.delete()
        ApiKey.objects.filter(
            organization=organization, created_by_id=membership.user_id, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
    key_cache_clear()


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


def _owners_lock(organization: Organization) -> None:
    """Serialize the organization's role changes, removals and invitation acceptances (its row,
    ``FOR NO KEY UPDATE``: rows referencing it are still written meanwhile). Without it, two
    owners demoting or removing each other at once each find the other still an owner, and both
    commit: no owner left; and an owner removed while their invitation is being accepted admits
    someone after their removal committed."""
    list(
        Organization.objects.select_for_update(no_key=True)
        .filter(pk=organization.pk)
        .values_list("pk")
    )


def _ensure_another_owner(organization: Organization, membership: Membership) -> None:
    others = Membership.objects.filter(organization=organization, role=Role.OWNER).exclude(
        pk=membership.pk
    )
    if not others.exists():
        raise Conflict("An organization needs at least one owner; promote someone else first.")


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
        _owners_lock(organization)
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
            _owners_lock(first.organization)
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


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    plaintext: str


def api_key_create(
    *,
    organization: Organization,
    name: str,
    created_by: User | None,
    created_by_role: str | None = None,
    scope: str = KeyScope.INFERENCE,
    limit: Decimal | None = None,
    limit_reset: str | None = None,
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    budget_aware: bool = False,
    created_by_key: ApiKey | None = None,
) -> CreatedKey:
    """Mint a key; the plaintext is returned here once and never stored. ``created_by_key``:
    the management key that made it (its bounds are ``key_lineage``'s to check).

    ``created_by_role`` is the role the creator acts with (a management key's, which may be below
    the person's); by default the creator's role in the organization. The key never acts above
    it, nor above its creator's current role (``keys.key_role``)."""
    if created_by is not None and created_by_role is None:
        membership = Membership.objects.filter(user=created_by, organization=organization).first()
        if membership is None:
            raise NotPermitted(f"{created_by.email} is not a member of {organization.name}.")
        created_by_role = membership.role
    minted = key_mint(scope=scope)
    key = ApiKey.objects.create(
        organization=organization,
        name=name,
        scope=scope,
        prefix=minted.prefix,
        digest=minted.digest,
        created_by=created_by,
        created_by_role=created_by_role,
        created_by_key=created_by_key,
        lineage_depth=0 if created_by_key is None else created_by_key.lineage_depth + 1,
        limit=limit,
        limit_reset=limit_reset,
        expires_at=expires_at,
        allowed_models=allowed_models or [],
        rpm=rpm,
        tpm=tpm,
        budget_aware=budget_aware,
    )
    return CreatedKey(key, minted.plaintext)


_UPDATABLE = {
    "name",
    "limit",
    "limit_reset",
    "expires_at",
    "allowed_models",
    "rpm",
    "tpm",
    "budget_aware",
}


def api_key_update(*, key: ApiKey, changes: dict[str, Any]) -> ApiKey:
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise InvalidInput(f"Cannot change {', '.join(sorted(unknown))}.", param=min(unknown))
    for field, value in changes.items():
        setattr(key, field, value)
    key.save(update_fields=sorted(changes))
    key_cache_clear()  # this process sees it now; others within API_KEY_CACHE_TTL
    return key
