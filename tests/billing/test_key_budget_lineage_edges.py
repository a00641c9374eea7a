"""Edges of a hierarchical budget (``billing.key_windows``): what an ancestor's refusal tells a
child's holder, and a window whose period was made longer."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiKey
from billing.models import KeySpendWindow, Reservation
from billing.windows import window_end, window_start
from tests.billing.key_budgets import (
    budget_organization_make,
    key_hold,
    key_refusal,
    key_settle,
    key_window,
    manage_key_make,
)
from tests.factories import child_key_make

pytestmark = pytest.mark.django_db


def test_an_ancestors_refusal_tells_what_the_key_can_spend_not_the_trees_limit() -> None:
    """Policy: a key's holder may know what it can still spend (``GET /api/v1/key`` says it), so
    the refusal says it too, with when that window ends; the ancestor's ``limit`` and spend are
    not given as such (they were withheld along with what is left, which protected nothing)."""
    _, parent = manage_key_make(budget_organization_make(), limit=Decimal("1"), limit_reset="daily")
    first, _ = child_key_make(parent)
    second, _ = child_key_make(parent, limit=Decimal("0.3"), limit_reset="weekly")
    key_hold(first, "0.8")  # a sibling's spend: the parent's day leaves 0.2

    refused = key_refusal(second, "0.25")

    assert refused["limited_by"].startswith(parent.prefix) and refused["reset"] == "daily"
    assert refused["needed"] == "0.25000000" and refused["remaining"] == "0.20000000"
    assert refused["reset_at"] == window_end("daily", timezone.now()).isoformat()
    assert "limit" not in refused and "spent" not in refused


def test_an_ancestors_refusal_reports_the_keys_own_window_when_it_is_tighter() -> None:
    """The parent refuses first (windows are locked in key id order); the key's own week, read
    after, leaves less: that is what it can spend, until the week ends."""
    _, parent = manage_key_make(budget_organization_make(), limit=Decimal("1"), limit_reset="daily")
    first, _ = child_key_make(parent)
    second, _ = child_key_make(parent, limit=Decimal("0.3"), limit_reset="weekly")
    key_hold(first, "0.6")  # the parent's day leaves 0.4

    refused = key_refusal(second, "0.5")

    assert refused["limited_by"].startswith(parent.prefix)
    assert refused["remaining"] == "0.30000000"
    assert refused["reset_at"] == window_end("weekly", timezone.now()).isoformat()
    own = key_refusal(second, "0.35")  # its own limit: as before, with its limit
    assert own["remaining"] == "0.30000000" and own["limit"] == "0.30000000"
    assert own["reset_at"] == window_end("weekly", timezone.now()).isoformat()


def test_a_lengthened_reset_does_not_forgive_the_window() -> None:
    """The parent's limit_reset made monthly while its window is a day inside the month: a hold
    computing the month's (earlier) start holds in that day's window, which keeps its spend."""
    _, parent = manage_key_make(budget_organization_make(), limit=Decimal("1"), limit_reset="daily")
    child, _ = child_key_make(parent)
    sibling, _ = child_key_make(parent)  # its own window is empty
    first = key_hold(child, "0.6")
    ApiKey.objects.filter(pk=parent.pk).update(limit_reset="monthly")
    day = window_start("monthly", timezone.now()) + timedelta(days=1)
    # Its window is that day's (whatever today is), and so is the hold's record of it.
    KeySpendWindow.objects.filter(key=parent).update(window_start=day)
    Reservation.objects.filter(generation_id=first).update(
        ancestor_windows=[[parent.pk, day.isoformat()]]
    )

    # The month's start is earlier: no reset, 0.6 + 0.6 > 1.
    assert key_refusal(sibling, "0.6")["limited_by"].startswith(parent.prefix)
    second = key_hold(sibling, "0.3")
    key_settle(child, first, "0.5")
    key_settle(sibling, second, "0.2")

    assert KeySpendWindow.objects.get(key=parent).window_start == day
    assert key_window(parent) == (Decimal("0.7"), 0)


def test_a_release_never_takes_reserved_below_zero() -> None:
    _, parent = manage_key_make(budget_organization_make(), limit=Decimal("1"), limit_reset="daily")
    child, _ = child_key_make(parent)
    held = key_hold(child, "0.6")
    # A window no longer counting the hold (reset, or repaired, since).
    KeySpendWindow.objects.filter(key=parent).update(reserved=Decimal("0.1"))

    key_settle(child, held, "0.5")

    assert key_window(parent) == (Decimal("0.5"), 0)
