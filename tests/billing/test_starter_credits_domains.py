"""Starter credits are limited per email domain and survive a SECRET_KEY rotation: a catch-all
domain confirms any address for one person (each a new inbox, granted again), and the inbox's
reference was an HMAC under SECRET_KEY, so rotating it made every inbox granted until then new
(its +tag variants granted again)."""

from __future__ import annotations

import hashlib
import importlib
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.invitation_limits import email_limit_key
from billing import services, starter_inbox
from billing.models import LedgerEntry, LedgerKind
from billing.services import ledger_post
from billing.starter_inbox import INBOX, inbox_digest
from tests.billing.test_starter_credits_inbox import _balance  # a person's first organization's
from tests.factories import dashboard_client, organization_make, user_make
from tests.threads import meet_after, run_at_once


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
        reference=f"{INBOX}{inbox_digest(email_limit_key('walter@example.com'), former)}",
    )
    settings.STARTER_CREDITS_USD = Decimal("5")
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "new-secret-key-" + "w" * 40, [former]

    assert _balance("walter+1@example.com") == Decimal("0")


@pytest.mark.django_db
def test_subdomains_share_their_registrable_domains_limit(settings: Any) -> None:
    """A catch-all answers for its subdomains too: counted by eTLD+1 (before: all granted)."""
    settings.STARTER_CREDITS_USD = Decimal("5")
    settings.STARTER_CREDITS_PER_DOMAIN = 1

    granted = [
        _balance(f"a@{host}") for host in ("mallory.test", "x1.mallory.test", "X2.Mallory.test")
    ]

    assert granted == [Decimal("5"), Decimal("0"), Decimal("0")]


@pytest.mark.django_db
def test_a_domains_grants_are_found_by_a_prefix_of_keyed_digests(settings: Any) -> None:
    """The reference starts with the domain's HMAC (a prefix scan of the reference index, not
    ``endswith`` over the whole ledger), neither part a bare hash of the domain or address."""
    settings.STARTER_CREDITS_USD = Decimal("5")
    _balance("ann@corp.test")
    reference = LedgerEntry.objects.get(kind=LedgerKind.PROMOTION).reference
    _, _, rest = reference.partition(INBOX)
    domain, _, inbox = rest.partition(":")

    assert (len(domain), len(inbox)) == (16, 40)
    assert domain != hashlib.sha256(b"corp.test").hexdigest()[:16]
    with CaptureQueriesContext(connection) as queries:
        _balance("bob@corp.test")
    counted = [q["sql"] for q in queries.captured_queries if "LIKE" in q["sql"]]
    assert counted and all(f"{INBOX}{domain}:%" in sql for sql in counted)


@pytest.mark.django_db
def test_the_domain_limit_counts_a_rolling_window(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.STARTER_CREDITS_USD = Decimal("5")
    settings.STARTER_CREDITS_PER_DOMAIN, settings.STARTER_CREDITS_DOMAIN_WINDOW_DAYS = 1, 30
    assert _balance("a@corp.test") == Decimal("5")
    assert _balance("b@corp.test") == Decimal("0")
    later = timezone.now() + timedelta(days=31)  # the grant is past the window then
    monkeypatch.setattr(starter_inbox, "timezone", SimpleNamespace(now=lambda: later))

    assert _balance("c@corp.test") == Decimal("5")


@pytest.mark.django_db(transaction=True)
def test_sign_ups_of_one_domain_at_once_share_its_limit(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.STARTER_CREDITS_USD = Decimal("5")
    settings.STARTER_CREDITS_PER_DOMAIN = 1
    meet_after(monkeypatch, services, "inbox_granted", 3)

    outcomes = run_at_once([lambda n=n: _balance(f"{n}@race.test") for n in ("a", "b", "c")])

    assert outcomes == [None, None, None]
    assert LedgerEntry.objects.filter(kind=LedgerKind.PROMOTION).count() == 1


def test_secret_key_fallbacks_are_stripped_and_empties_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECRET_KEY_FALLBACKS", " old-one , ,old-two,")
    import routerhub.settings as module

    importlib.reload(module)
    try:
        assert module.SECRET_KEY_FALLBACKS == ["old-one", "old-two"]
    finally:
        monkeypatch.delenv("SECRET_KEY_FALLBACKS")
        importlib.reload(module)


@pytest.mark.django_db
@pytest.mark.parametrize("billing_enabled", [False, True])
def test_an_organization_refused_starter_credits_is_told_why(
    settings: Any, billing_enabled: bool
) -> None:
    """The credits page promised starter credits to every new organization, and one refused them
    (its domain's share taken) saw a balance of 0 and no reason."""
    settings.STARTER_CREDITS_USD = Decimal("5")
    settings.STARTER_CREDITS_PER_DOMAIN = 1
    settings.BILLING_ENABLED = billing_enabled
    granted_by = user_make("a@mallory.test")
    granted = organization_make(granted_by)
    refused_by = user_make("b@mallory.test")
    refused = organization_make(refused_by)

    shown = dashboard_client(granted_by, granted).get("/dashboard/credits/").content.decode()
    told = dashboard_client(refused_by, refused).get("/dashboard/credits/").content.decode()

    assert 'id="starter-none"' not in shown
    assert 'id="starter-none"' in told and "at most 1 sign-ups per email domain" in told
    if not billing_enabled:
        assert "starter credits</strong> this organization got" in shown
        assert "starter credits</strong> this organization got" not in told


@pytest.mark.django_db
def test_paid_private_suffix_domains_share_one_limit_unless_listed_open(settings: Any) -> None:
    """The trade-off of counting by ICANN suffixes (README "Starter credits"): acme.uk.com and
    other.uk.com share uk.com's limit; listed in STARTER_CREDITS_OPEN_DOMAINS, acme.uk.com's
    addresses are exempt altogether, not its subdomains'."""
    settings.STARTER_CREDITS_USD = Decimal("5")
    settings.STARTER_CREDITS_PER_DOMAIN = 1
    shared = [_balance(f"a@{host}") for host in ("acme.uk.com", "other.uk.com")]
    settings.STARTER_CREDITS_OPEN_DOMAINS = frozenset({"acme.uk.com"})

    listed = [_balance(f"{name}@acme.uk.com") for name in ("b", "c")]

    assert shared == [Decimal("5"), Decimal("0")]
    assert listed == [Decimal("5")] * 2 and _balance("d@mail.acme.uk.com") == Decimal("0")
