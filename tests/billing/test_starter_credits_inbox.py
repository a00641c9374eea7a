"""Starter credits come once per inbox, not once per address: the +tag variants of one address
(a+1@, a+2@ reach a@ at most providers) and Gmail's dotted and googlemail.com forms confirm from
one mailbox, and each sign-up was a new person granted ``STARTER_CREDITS_USD`` again (free
credits without end on a demo deployment). The grant's ledger entry records the inbox (hashed,
``accounts.invitation_limits.email_limit_key``) and a grant to an inbox already granted is none."""

from __future__ import annotations

import threading
from decimal import Decimal
from functools import partial
from typing import Any

import pytest

from accounts.models import User
from billing.models import CreditAccount, LedgerEntry, LedgerKind
from tests.conftest import require_postgres
from tests.factories import organization_make, user_make
from tests.threads import run_at_once


def _balance(email: str) -> Decimal:
    organization = organization_make(user_make(email))
    return CreditAccount.objects.get(organization=organization).balance


@pytest.mark.django_db
def test_the_variants_of_one_inbox_are_granted_starter_credits_once(settings: Any) -> None:
    settings.STARTER_CREDITS_USD = Decimal("5")

    first = _balance("Mallory.Smith@gmail.com")
    variants = [
        _balance(email) for email in ("mallorysmith+2@gmail.com", "mallory.smith+x@googlemail.com")
    ]
    tagged = [_balance("eve+1@example.org"), _balance("eve+2@example.org")]
    others = [_balance("bob@gmail.com"), _balance("eve@example.net")]

    assert (first, variants) == (Decimal("5"), [Decimal("0"), Decimal("0")])
    assert tagged == [Decimal("5"), Decimal("0")]
    assert others == [Decimal("5"), Decimal("5")]
    assert LedgerEntry.objects.filter(kind=LedgerKind.PROMOTION).count() == 4


@pytest.mark.django_db(transaction=True)
def test_variants_signing_up_at_once_are_granted_once(settings: Any) -> None:
    require_postgres()
    settings.STARTER_CREDITS_USD = Decimal("5")
    users = [user_make(f"trent+{i}@example.com") for i in range(4)]
    barrier = threading.Barrier(len(users))

    def sign_up(user: User) -> None:
        barrier.wait(timeout=10)
        organization_make(user)

    outcomes = run_at_once([partial(sign_up, user) for user in users])

    assert outcomes == [None] * len(users)
    grants = LedgerEntry.objects.filter(kind=LedgerKind.PROMOTION)
    assert [entry.amount for entry in grants] == [Decimal("5")]
