"""The limits on invitation emails, checked when an owner invites (the request), not when the
mail task sends: per address (a cooldown), per organization and per person (an hour)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from accounts.models import Invitation, MailStatus, Organization, User
from routerhub.domain import Conflict, RateLimited

# Gmail ignores dots in the local part and delivers googlemail.com to the same inbox.
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
# A quoted local part's escapes (RFC 5321 quoted-pair): ``\x`` is ``x``.
_QUOTED_PAIR = re.compile(r"\\(.)")


def email_limit_key(email: str) -> str:
    """The inbox an address reaches, for the per-address cooldown (and the once-per-inbox
    starter credits): a quoted local part unquoted (``"m\\allory"@`` is ``mallory@``), the
    domain IDNA-encoded (``bücher.de`` is ``xn--bcher-kva.de``), both casefolded, a ``+tag``
    dropped (any domain: most providers deliver ``a+x@`` to ``a@``), and for Gmail the dots
    of the local part dropped and googlemail.com read as gmail.com. Only the limits use it:
    invitations are stored, mailed and accepted with the address as typed."""
    local, at, domain = email.strip().rpartition("@")
    if not at:
        return email.strip().casefold()
    if len(local) >= 2 and local[0] == local[-1] == '"':
        local = _QUOTED_PAIR.sub(r"\1", local[1:-1])
    local = local.casefold().split("+", 1)[0]
    domain = _idna(domain.casefold().rstrip("."))
    if domain in _GMAIL_DOMAINS:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def _idna(domain: str) -> str:
    """The domain's ASCII (IDNA) form; as given when it has none (an invalid label)."""
    try:
        return domain.encode("idna").decode("ascii").casefold()
    except UnicodeError:
        return domain


def invitation_limits_check(organization: Organization, email: str, now: datetime) -> None:
    """Refuse an invitation email the platform's sender should not send: the same inbox again
    (``email_limit_key``) within ``INVITATION_RESEND_COOLDOWN_SECONDS`` (429; an invitation
    whose mail failed, or is stuck queued (``Invitation.mail_stuck``), does not count, so
    "resend" works), more than
    ``INVITATIONS_PER_ORGANIZATION_PER_HOUR`` (429), or past
    ``INVITATIONS_OPEN_PER_ORGANIZATION_MAX`` open ones (409). Without them an owner mails any
    address, any number of times, under an organization name they chose."""
    sent = Invitation.objects.filter(organization=organization)
    cooldown = timedelta(seconds=settings.INVITATION_RESEND_COOLDOWN_SECONDS)
    stuck = now - timedelta(seconds=settings.INVITATION_MAIL_STUCK_SECONDS)
    # Rows written before ``email_key`` existed (or by the previous release during a deploy)
    # have "": they match by the address as typed, as before.
    same_inbox = Q(email_key=email_limit_key(email)) | Q(email_key="", email__iexact=email)
    last = (
        sent.filter(same_inbox, created_at__gt=now - cooldown)
        .exclude(mail_status=MailStatus.FAILED)
        .exclude(
            Q(mail_status=MailStatus.QUEUED)
            & (Q(mail_due_at__lt=stuck) | Q(mail_due_at__isnull=True, created_at__lt=stuck))
        )
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


def inviter_limit_check(invited_by: User, now: datetime) -> None:
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
