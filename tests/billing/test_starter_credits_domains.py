"""Starter credits are limited per email domain and survive a SECRET_KEY rotation: a catch-all
domain confirms any address for one person (each a new inbox, granted again), and the inbox's
reference was an HMAC under SECRET_KEY, so rotating it made every inbox granted until then new
(its +tag variants granted again)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from accounts.invitation_limits import email_limit_key
from billing.models import LedgerEntry, LedgerKind
from billing.services import _inbox_prefix, ledger_post
from tests.billing.test_starter_credits_inbox import _balance  # a person's first organization's
from tests.factories import organization_make, user_make


@pytest.mark.django_db
def test_a_catch_all_domain_is_granted_at_most_its_share(settings: Any) -> None:
    settings.STARTER_CREDITS_USD = Decimal("5")
    settings.STARTER_CREDITS_PER_DOMAIN = 2

    catch_all = [_balance(f"{name}@mallory.test") for name in ("a", "b", "c", "d")]
    # Hosted mailboxes are one person's each: no domain share (STARTER_CREDITS_OPEN_DOMAINS).
    gmail = [_balance(f"{name}@gmail.com") for name in ("ann", "ben", "cat")]
    elsewhere = _balance("a@trent.test")

    assert catch_all == [Decimal("5"), Decimal("5"), Decimal("0"), Decimal("0")]
    assert gmail == [Decimal("5")] * 3 and elsewhere == Decimal("5")
    assert LedgerEntry.objects.filter(kind=LedgerKind.PROMOTION).count() == 6


@pytest.mark.django_db
def test_an_inbox_granted_before_a_secret_key_rotation_is_not_granted_again(
    settings: Any,
) -> None:
    settings.STARTER_CREDITS_USD = Decimal("5")
    settings.SECRET_KEY = "first-secret-key-" + "x" * 40
    granted = _balance("eve@example.org")

    settings.SECRET_KEY = "rotated-secret-key-" + "y" * 40
    again = _balance("eve+2@example.org")

    assert (granted, again) == (Decimal("5"), Decimal("0"))


@pytest.mark.django_db
def test_an_earlier_releases_grant_under_a_former_secret_key_still_counts(settings: Any) -> None:
    """A grant's reference was the inbox's HMAC under SECRET_KEY: after a rotation, found under
    the former key kept in SECRET_KEY_FALLBACKS (Django's way), as sessions are."""
    settings.STARTER_CREDITS_USD = Decimal("0")
    former = "former-secret-key-" + "z" * 40
    owner = user_make("walter@example.com")
    ledger_post(
        organization=organization_make(owner),
        kind=LedgerKind.PROMOTION,
        amount=Decimal("5"),
        idempotency_key=f"starter-credits:person:{owner.pk}",
        reference=_inbox_prefix(email_limit_key("walter@example.com"), former),
    )
    settings.STARTER_CREDITS_USD = Decimal("5")
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "new-secret-key-" + "w" * 40, [former]

    assert _balance("walter+1@example.com") == Decimal("0")
