"""A key's own limit that never resets (``limit_reset`` null) is released and charged at
settlement like any other window (``billing.key_windows``).

The finding: such a hold recorded no window (``key_window_start`` is NULL for "never resets"
and "no window" alike), so settlement released nothing: after a 0.25 hold settled at 0.10 the
window still showed 0 spent and 0.25 held, and a 1 USD lifetime key was refused after four
requests that had really cost 0.40.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiKey
from billing.drafts import UsageDraft
from billing.models import KeySpendWindow, Reservation
from billing.services import reservations_sweep
from billing.settlement import usage_settle
from tests.billing.key_budgets import (
    budget_organization_make,
    key_hold,
    key_refusal,
    key_settle,
    key_window,
    lifetime_key_make,
    manage_key_make,
)
from tests.factories import child_key_make, key_client, key_make

pytestmark = pytest.mark.django_db


def test_a_never_resetting_key_works_until_it_has_really_spent_its_limit() -> None:
    plaintext, key = lifetime_key_make("1")
    charges = []
    for _ in range(7):  # 7 holds of 0.25 (1.75 in all) that each really cost 0.10
        key_settle(plaintext, key_hold(plaintext, "0.25"), "0.1")
        charges.append(Decimal("0.1"))
        assert key_window(key) == (sum(charges), 0)

    body = key_client(plaintext).get("/api/v1/key").json()
    assert Decimal(body["limit_remaining"]) == Decimal("0.3")
    assert Decimal(body["usage"]) == Decimal("0.7")
    key_refusal(plaintext, "0.31")
    key_settle(plaintext, key_hold(plaintext, "0.3"), "0.3")  # the last 0.30 of its 1 USD

    assert key_window(key) == (Decimal("1"), 0)
    assert key_refusal(plaintext, "0.01")["remaining"] == "0.00000000"
    assert Decimal(key_client(plaintext).get("/api/v1/key").json()["limit_remaining"]) == 0


def test_the_sweep_releases_and_charges_a_never_resetting_window() -> None:
    plaintext, key = lifetime_key_make("1")
    free, lost = key_hold(plaintext, "0.2"), key_hold(plaintext, "0.3")
    expired = timezone.now() - timedelta(seconds=1)
    Reservation.objects.filter(generation_id=free).update(state="free", expires_at=expired)
    Reservation.objects.filter(generation_id=lost).update(expires_at=expired)

    assert reservations_sweep() == 2
    # Released for free; charged at its hold (its usage never arrived).
    assert key_window(key) == (Decimal("0.3"), 0)


def test_a_child_with_its_own_lifetime_limit_releases_its_own_and_its_parents() -> None:
    _, parent = manage_key_make(budget_organization_make(), limit=Decimal("2"), limit_reset=None)
    child, child_row = child_key_make(parent, limit=Decimal("1"), limit_reset=None)

    key_settle(child, key_hold(child, "0.5"), "0.1")

    assert key_window(parent) == (Decimal("0.1"), 0) and key_window(child_row) == (
        Decimal("0.1"),
        0,
    )


def test_a_hold_taken_before_the_fix_settles_in_the_window_its_key_never_resets() -> None:
    """Rolling deploy: old code recorded no window at all (``ancestor_windows`` NULL)."""
    plaintext, key = lifetime_key_make("1")
    old = key_hold(plaintext, "0.5")
    Reservation.objects.filter(generation_id=old).update(ancestor_windows=None)
    # A hold of a key that had no limit yet when it was taken: in no window.
    unlimited, other = lifetime_key_make("1")
    ApiKey.objects.filter(pk=other.pk).update(limit=None)
    before_limit = key_hold(unlimited, "0.5")
    Reservation.objects.filter(generation_id=before_limit).update(ancestor_windows=None)
    ApiKey.objects.filter(pk=other.pk).update(limit=Decimal("1"))
    key_hold(unlimited, "0.2")  # its window, from here on

    key_settle(plaintext, old, "0.1")
    key_settle(unlimited, before_limit, "0.1")

    assert key_window(key) == (Decimal("0.1"), 0)
    # Released never below zero; its charge counts (the key spent it).
    assert key_window(other) == (Decimal("0.1"), 0)


def test_holds_of_keys_without_a_limit_record_none_and_settle_without_a_key_lookup() -> None:
    organization = budget_organization_make()
    plaintext = key_make(organization)
    held = key_hold(plaintext, "0.5")

    assert Reservation.objects.get(generation_id=held).ancestor_windows == []
    key = ApiKey.objects.get(prefix=plaintext[:16])
    draft = UsageDraft(generation_id=held, organization_id=organization.pk, key_id=key.pk,
                       status="succeeded", cost=Decimal("0.1"))  # fmt: skip
    with CaptureQueriesContext(connection) as settling:
        usage_settle(draft)
    assert not [q for q in settling.captured_queries if "accounts_apikey" in q["sql"]]
    assert not KeySpendWindow.objects.filter(key__organization=organization).exists()
