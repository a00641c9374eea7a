"""Starter credits go to a verified address only. Granted at signup, before the address was
confirmed, anyone could sign up ``victim+x@`` (never confirmed) and so spend the real victim's
once-per-inbox grant. The grant waits for allauth's ``email_confirmed`` (or is made at signup
when the address is verified already, or when ``ACCOUNT_EMAIL_VERIFICATION`` is "none", as a
local deployment may run), and only grants whose address was verified count for the inbox."""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from allauth.account.signals import email_confirmed, user_signed_up
from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.dispatch import receiver

from accounts.models import Organization, User


def _verification_off() -> bool:
    return str(settings.ACCOUNT_EMAIL_VERIFICATION).lower() == "none"


def address_verified(person: int) -> bool:
    """Whether the person's address (``User.email``) is verified (always, verification off)."""
    if _verification_off():
        return True
    email = User.objects.filter(pk=person).values_list("email", flat=True).first() or ""
    verified = EmailAddress.objects.filter(user_id=person, email__iexact=email, verified=True)
    return bool(email.strip()) and verified.exists()


def verified_grants() -> Q:
    """The ledger entries (filter) whose organization's creator has a verified address: grants
    made by an earlier release at an unconfirmed signup do not take an inbox's grant."""
    if _verification_off():
        return Q()
    verified = EmailAddress.objects.filter(user_id=OuterRef("organization__created_by"))
    return Q(Exists(verified.filter(verified=True)))


def starter_credits_on_verified(user: User) -> None:
    """Grant the person's starter credits to the first organization they created, once their
    address is verified (``starter_credits_grant`` checks it, and grants once per person)."""
    from billing.services import starter_credits_grant  # billing.services imports this module

    first = Organization.objects.filter(created_by=user).order_by("created_at", "pk").first()
    if first is not None:
        starter_credits_grant(organization=first, owner=user)


@receiver(email_confirmed, dispatch_uid="billing.starter_credits.email_confirmed")
def _on_email_confirmed(sender: Any, request: Any, email_address: EmailAddress, **_: Any) -> None:
    starter_credits_on_verified(email_address.user)


@receiver(user_signed_up, dispatch_uid="billing.starter_credits.user_signed_up")
def _on_user_signed_up(sender: Any, request: Any, user: User, **_: Any) -> None:
    # The address may be verified at signup (an invitation's link proved the inbox) with no
    # ``email_confirmed``; the grant checks, so an unverified signup is granted nothing here.
    starter_credits_on_verified(user)
