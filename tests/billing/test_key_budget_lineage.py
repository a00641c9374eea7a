"""A hierarchical budget: a key a management key made spends against the limit of every key up
its lineage, not only its own (``billing.key_windows``).

The finding: a management key with a 1 USD limit could mint keys of 1 USD each (no more than it
has, so ``key_lineage.grant_check`` allowed them) and, through them, spend 1 USD per key. Each
hold here goes through the gateway's door (``metering.hold``) with the key as it authenticates.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.keys import key_authenticate, key_cache_clear
from accounts.models import KeyScope
from accounts.services import api_key_update
from billing.models import KeySpendWindow, Reservation
from billing.services import reservations_sweep
from tests.billing.key_budgets import (
    budget_organization_make,
    key_hold,
    key_refusal,
    key_reserve,
    key_settle,
    key_window,
    manage_key_make,
)
from tests.factories import child_key_make, key_make

pytestmark = pytest.mark.django_db


def test_two_children_of_a_key_together_spend_no_more_than_its_limit() -> None:
    _, parent = manage_key_make(budget_organization_make(), limit=Decimal("1"), limit_reset="daily")
    first, _ = child_key_make(parent)  # takes its parent's limit: 1 a day
    second, _ = child_key_make(parent, limit=Decimal("1"), limit_reset="daily")

    held = key_hold(first, "0.6")
    refused = key_refusal(second, "0.6")  # its own window is empty; its parent's is not

    assert refused["limited_by"].startswith(parent.prefix) and "limit" not in refused
    assert refused["remaining"] == "0.40000000"  # what it can spend, not the parent's limit
    assert parent.prefix in refused["message"] and "made from" in refused["message"]
    key_settle(first, held, "0.5")
    assert key_window(parent) == (Decimal("0.5"), 0)
    key_refusal(second, "0.6")
    key_hold(second, "0.5")  # what is left of the parent's window
    assert key_window(parent) == (Decimal("0.5"), Decimal("0.5"))
    key_refusal(first, "0.01")


def test_a_grandchild_spends_against_its_grandparent() -> None:
    _, grandparent = manage_key_make(
        budget_organization_make(), limit=Decimal("1"), limit_reset="weekly"
    )
    _, parent = child_key_make(grandparent, scope=KeyScope.MANAGE)
    grandchild, _ = child_key_make(parent)
    sibling, _ = child_key_make(grandparent)

    key_hold(grandchild, "0.7")
    refused = key_refusal(sibling, "0.4")

    assert refused["limited_by"].startswith(grandparent.prefix)
    assert key_window(grandparent) == (0, Decimal("0.7")) and key_window(parent) == (
        0,
        Decimal("0.7"),
    )


def test_the_ancestors_window_resetting_frees_its_children_up_to_their_own_limit() -> None:
    _, parent = manage_key_make(
        budget_organization_make(), limit=Decimal("0.5"), limit_reset="daily"
    )
    child, child_row = child_key_make(parent, limit=Decimal("0.5"), limit_reset="monthly")
    # A person with the role may grant more than the key that made it has (the dashboard).
    child_row = api_key_update(key=child_row, changes={"limit": Decimal("0.8")})
    key_settle(child, key_hold(child, "0.5"), "0.5")

    assert key_refusal(child, "0.1")["limited_by"].startswith(parent.prefix)
    # A day later the parent's daily window is a new one; the child's month is not over.
    KeySpendWindow.objects.filter(key=parent).update(
        window_start=timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
        - timedelta(days=1)
    )
    held = key_hold(child, "0.1")
    # 0.5 spent + 0.1 held + 0.3 > 0.8, the child's own limit; 0.1 + 0.3 fit the parent's.
    own = key_refusal(child, "0.3")

    assert "limited_by" not in own and own["message"].startswith("This key has reached")
    assert key_window(parent) == (0, Decimal("0.1")) and key_window(child_row) == (
        Decimal("0.5"),
        Decimal("0.1"),
    )
    # A hold the sweep releases (its request failed before any answer) leaves both windows.
    Reservation.objects.filter(generation_id=held).update(
        state="free", expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert reservations_sweep() == 1
    assert key_window(parent) == (0, 0) and key_window(child_row) == (Decimal("0.5"), 0)


def test_a_key_a_person_made_holds_with_the_queries_it_always_did() -> None:
    """Performance-neutral for keys without a parent: no ancestor read when authenticating,
    and its hold locks its own window only (a child's: one more window, two queries)."""
    organization = budget_organization_make()
    plaintext = key_make(organization, limit=Decimal("1"), limit_reset="daily")
    _, parent = manage_key_make(organization, limit=Decimal("1"), limit_reset="daily")
    child, _ = child_key_make(parent)
    key_cache_clear()

    with CaptureQueriesContext(connection) as person_auth:
        key = key_authenticate(plaintext)
    with CaptureQueriesContext(connection) as child_auth:
        child_key = key_authenticate(child)

    assert key.ancestors == () and len(child_auth) == len(person_auth) + 1
    assert [bound.key_id for bound in child_key.ancestors] == [parent.pk]
    windows = "billing_keyspendwindow"
    key_reserve(key, "0.1")  # each window row exists from here on
    key_reserve(child_key, "0.1")
    with CaptureQueriesContext(connection) as person_hold:
        key_reserve(key, "0.1")
    with CaptureQueriesContext(connection) as child_hold:
        key_reserve(child_key, "0.1")
    person_windows = [q for q in person_hold.captured_queries if windows in q["sql"]]
    child_windows = [q for q in child_hold.captured_queries if windows in q["sql"]]
    assert len(child_windows) == 2 * len(person_windows)
    assert len(child_hold) == len(person_hold) + len(person_windows)
