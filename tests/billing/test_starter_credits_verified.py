"""Starter credits go to a verified address only: granted at signup, before the address was
confirmed, anyone took someone else's once-per-inbox grant by signing up their ``+tag``
variant and never confirming it (``billing.starter_verification``)."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client

from accounts.models import Membership, Organization
from billing.models import CreditAccount, LedgerEntry, LedgerKind
from billing.services import ledger_post
from billing.starter_inbox import inbox_of
from tests.factories import PASSWORD, organization_make, user_make


def _sign_up(email: str) -> Organization:
    Client().post(
        "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    )
    return Membership.objects.get(user__email=email).organization


def _confirm(email: str) -> None:
    link = re.search(r"https?://\S+", mail.outbox[-1].body)
    assert link and email in mail.outbox[-1].to, mail.outbox[-1].to
    Client().post("/accounts/" + link.group(0).split("/accounts/", 1)[1])


def _balance(organization: Organization) -> Decimal:
    return CreditAccount.objects.get(organization=organization).balance


@pytest.mark.django_db
def test_an_unconfirmed_variant_does_not_take_the_real_inboxs_starter_credits(
    settings: Any,
) -> None:
    settings.STARTER_CREDITS_USD = Decimal("5")
    victim = f"victim{uuid.uuid4().hex[:8]}@example.com"  # allauth's per-address mail limits

    attacker = _sign_up(victim.replace("@", "+x@"))  # never confirmed
    real = _sign_up(victim)
    assert (_balance(attacker), _balance(real)) == (Decimal("0"), Decimal("0"))
    _confirm(victim)

    assert (_balance(attacker), _balance(real)) == (Decimal("0"), Decimal("5"))
    assert EmailAddress.objects.get(email=victim).verified


@pytest.mark.django_db
def test_without_email_verification_signup_is_granted_at_once(settings: Any) -> None:
    settings.STARTER_CREDITS_USD = Decimal("5")
    settings.ACCOUNT_EMAIL_VERIFICATION = "none"

    organization = _sign_up(f"dev{uuid.uuid4().hex[:8]}@example.com")

    assert _balance(organization) == Decimal("5")


@pytest.mark.django_db
def test_a_grant_to_an_unverified_address_does_not_count_for_the_inbox(settings: Any) -> None:
    settings.STARTER_CREDITS_USD = Decimal("0")
    attacker = user_make("carol+x@example.com")
    EmailAddress.objects.filter(user=attacker).update(verified=False)
    taken = organization_make(attacker)
    # As an earlier release granted it: at signup, before the address was confirmed.
    ledger_post(
        organization=taken,
        kind=LedgerKind.PROMOTION,
        amount=Decimal("5"),
        idempotency_key=f"starter-credits:person:{attacker.pk}",
        reference=inbox_of(attacker.pk).reference,  # type: ignore[union-attr]
    )
    settings.STARTER_CREDITS_USD = Decimal("5")

    organization = organization_make(user_make("carol@example.com"))

    assert _balance(organization) == Decimal("5")
    assert LedgerEntry.objects.filter(kind=LedgerKind.PROMOTION).count() == 2


@pytest.mark.django_db
def test_free_subdomains_of_a_private_suffix_share_one_domain_limit(settings: Any) -> None:
    """eu.org (and pp.ua, is-a.dev, ...) hands out subdomains with their own mail for free, and
    the public suffix list's private section counts each as a registrable domain: every new
    subdomain's catch-all had STARTER_CREDITS_PER_DOMAIN grants of its own. Counted under the
    ICANN suffix (eu.org's share), the third sign-up through the real signup and confirmation
    is granted nothing (old code: 5 each)."""
    settings.STARTER_CREDITS_USD = Decimal("5")
    settings.STARTER_CREDITS_PER_DOMAIN = 2
    tag = uuid.uuid4().hex[:8]  # allauth's per-address mail limits
    balances = []
    for n in range(3):
        email = f"a{tag}@mallory{n}{tag}.eu.org"
        organization = _sign_up(email)
        _confirm(email)
        balances.append(_balance(organization))

    assert balances == [Decimal("5"), Decimal("5"), Decimal("0")]


@pytest.mark.django_db
def test_addresses_at_ip_literals_share_one_domain_limit(settings: Any) -> None:
    """a@[203.0.113.5] is a valid address (Django's validator takes address literals) and a
    mail server with many addresses (an IPv6 /64 has 2^64) receives at each: every literal was a
    registrable domain with a share of its own. They share one (old code: 5 each)."""
    settings.STARTER_CREDITS_USD = Decimal("5")
    settings.STARTER_CREDITS_PER_DOMAIN = 2
    tag = uuid.uuid4().hex[:8]  # allauth's per-address mail limits
    balances = []
    for host in ("203.0.113.5", "203.0.113.6", "2001:db8::7"):
        email = f"a{tag}@[{host}]"
        organization = _sign_up(email)
        _confirm(email)
        balances.append(_balance(organization))

    assert balances == [Decimal("5"), Decimal("5"), Decimal("0")]
