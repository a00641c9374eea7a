"""What a key reports and routes by is what its holds are allowed: the tightest of its own and
its ancestors' limit windows, read with the holds' rule for a window (``window_rolled``).

The findings: ``GET /api/v1/key``'s ``limit_remaining`` was the key's own limit less its own
window, so a child whose parent's window was nearly spent by a sibling reported its whole limit
(a key without a limit of its own reported none) and budget-aware routing read the key's own
window only; and a key whose ``limit_reset`` went from daily to none reported its whole limit
while its holds still counted the window its row carries on (it was refused at the real one).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.keys import key_authenticate, key_cache_clear
from accounts.models import ApiKey, KeyScope
from accounts.services import api_key_update
from billing.models import KeySpendWindow
from billing.selectors import key_limit_remaining
from billing.window_spend import window_spend_clear
from billing.windows import window_end, window_start
from routing.budget import key_budget
from tests.billing.key_budgets import (
    budget_organization_make,
    key_hold,
    key_refusal,
    key_settle,
    key_window,
    lifetime_key_make,
    manage_key_make,
)
from tests.factories import child_key_make, key_client

pytestmark = pytest.mark.django_db


def _remaining(plaintext: str) -> tuple[Decimal | None, float | None]:
    """``limit_remaining`` of ``GET /api/v1/key``, ours and OpenRouter's (``data``)."""
    body = key_client(plaintext).get("/api/v1/key").json()
    ours = body["limit_remaining"]
    return (None if ours is None else Decimal(ours)), body["data"]["limit_remaining"]


def test_a_childs_limit_remaining_is_the_least_its_ancestors_windows_leave() -> None:
    _, parent = manage_key_make(budget_organization_make(), limit=Decimal("1"), limit_reset="daily")
    child, child_row = child_key_make(parent)  # 1 a day, its parent's
    sibling, _ = child_key_make(parent)
    key_settle(sibling, key_hold(sibling, "0.5"), "0.4")
    key_hold(sibling, "0.3")  # open

    # Its own window is empty; its parent's leaves 1 - 0.4 - 0.3.
    assert _remaining(child) == (Decimal("0.3"), 0.3)
    key_refusal(child, "0.31")
    # A key with no limit of its own (a person may set that) is bounded by its parent's all
    # the same: it reported none.
    api_key_update(key=child_row, changes={"limit": None, "limit_reset": None})
    assert _remaining(child) == (Decimal("0.3"), 0.3)


def test_a_childs_own_window_counts_when_it_is_the_tightest() -> None:
    _, parent = manage_key_make(
        budget_organization_make(), limit=Decimal("5"), limit_reset="monthly"
    )
    child, _ = child_key_make(parent, limit=Decimal("1"), limit_reset="monthly")
    key_settle(child, key_hold(child, "0.5"), "0.5")

    assert _remaining(child) == (Decimal("0.5"), 0.5)


def test_the_chain_and_its_windows_are_read_in_one_query() -> None:
    _, root = manage_key_make(budget_organization_make(), limit=Decimal("3"), limit_reset="weekly")
    _, middle = child_key_make(root, scope=KeyScope.MANAGE)
    grandchild, row = child_key_make(middle)
    key_hold(grandchild, "0.5")

    with CaptureQueriesContext(connection) as read:
        remaining = key_limit_remaining(key=row, now=timezone.now())

    assert remaining is not None and len(read.captured_queries) == 1
    assert remaining.remaining == Decimal("2.5") and remaining.reset == "weekly"


def test_limit_remaining_after_daily_becomes_lifetime_is_what_the_holds_allow() -> None:
    plaintext, key = lifetime_key_make("1")
    ApiKey.objects.filter(pk=key.pk).update(limit_reset="daily")
    key_settle(plaintext, key_hold(plaintext, "0.3"), "0.2")
    key_hold(plaintext, "0.1")  # open
    ApiKey.objects.filter(pk=key.pk).update(limit_reset=None)
    key_cache_clear()

    # The window its row is in carries on as the lifetime one: 1 - 0.2 - 0.1 (it said 1).
    assert _remaining(plaintext) == (Decimal("0.7"), 0.7)
    key_refusal(plaintext, "0.71")
    key_hold(plaintext, "0.7")
    assert _remaining(plaintext) == (Decimal("0"), 0.0)


def test_a_lifetime_hold_releases_nothing_from_the_window_after_a_daily_period() -> None:
    """null -> daily -> null: the daily hold rolled the row to today's start, and a start only
    ever moves later, so the old lifetime hold (recorded ``[key, null]``) names no window now
    and its release finds none: nothing is released from, or charged to, the new one."""
    plaintext, key = lifetime_key_make("1")
    lifetime = key_hold(plaintext, "0.5")
    ApiKey.objects.filter(pk=key.pk).update(limit_reset="daily")
    key_hold(plaintext, "0.2")
    ApiKey.objects.filter(pk=key.pk).update(limit_reset=None)
    key_hold(plaintext, "0.1")

    key_settle(plaintext, lifetime, "0.5")

    assert key_window(key) == (0, Decimal("0.3"))
    assert _remaining(plaintext) == (Decimal("0.7"), 0.7)


def _routing_budget(plaintext: str) -> dict[str, Any]:
    key_cache_clear()
    budget = key_budget(key_authenticate(plaintext))
    assert budget is not None
    return budget.as_routing(0.0, budget.effective(0.0))


def test_budget_aware_routing_reads_the_fullest_window_and_hides_an_ancestors_amounts() -> None:
    window_spend_clear()
    _, parent = manage_key_make(budget_organization_make(), limit=Decimal("1"), limit_reset="daily")
    child, child_row = child_key_make(parent, limit=Decimal("1"), limit_reset="daily")
    ApiKey.objects.filter(pk=child_row.pk).update(budget_aware=True)
    sibling, _ = child_key_make(parent)
    key_hold(child, "0.1")  # its own window: 10%
    key_hold(sibling, "0.8")  # its parent's: 90%, as this process's hold saw it

    routing = _routing_budget(child)

    assert routing["share"] == 0.9 and routing["effective_tradeoff"] > 0.8
    assert routing["window_of"] == "ancestor" and "limit" not in routing
    assert "spent" not in routing
    key_hold(child, "0.05")  # both windows fill; the parent's (0.95) stays the fuller
    assert _routing_budget(child)["share"] == 0.95
    assert _routing_budget(child)["window_of"] == "ancestor"


def test_budget_aware_routing_after_daily_becomes_lifetime_reads_the_window_carried_on() -> None:
    window_spend_clear()
    plaintext, key = lifetime_key_make("1")
    ApiKey.objects.filter(pk=key.pk).update(limit_reset="daily", budget_aware=True)
    key_hold(plaintext, "0.8")
    ApiKey.objects.filter(pk=key.pk).update(limit_reset=None)

    routing = _routing_budget(plaintext)

    # Its own window (0.8 of 1; it read an empty window before).
    assert routing["share"] == 0.8 and routing["limit"] == "1.00000000"
    assert routing["window_of"] == "key"


def _reset_at(plaintext: str) -> datetime | None:
    at = key_client(plaintext).get("/api/v1/key").json()["limit_reset_at"]
    return None if at is None else datetime.fromisoformat(at)


def test_a_lifetime_child_under_a_daily_parent_reports_the_parents_window_end() -> None:
    """``limit_reset_at`` is the end of the window ``limit_remaining`` comes from; ``limit`` and
    ``limit_reset`` stay the key's own setting (it said 0.10 left with no reset: for ever)."""
    _, parent = manage_key_make(budget_organization_make(), limit=Decimal("1"), limit_reset="daily")
    child, row = child_key_make(parent)
    ApiKey.objects.filter(pk=row.pk).update(limit=Decimal("5"), limit_reset=None)
    sibling, _ = child_key_make(parent)
    key_hold(sibling, "0.9")

    body = key_client(child).get("/api/v1/key").json()

    assert (body["limit"], body["limit_reset"]) == ("5.00000000", None)
    assert body["limit_remaining"] == "0.10000000"
    assert _reset_at(child) == window_end("daily", timezone.now())
    data = body["data"]
    assert (data["limit"], data["limit_reset"], data["limit_remaining"]) == (5.0, None, 0.1)


@pytest.mark.parametrize(("parents", "childs"), [(None, "daily"), ("daily", None)])
def test_of_two_windows_leaving_the_same_the_one_resetting_later_is_reported(
    parents: str | None, childs: str | None
) -> None:
    _, parent = manage_key_make(budget_organization_make(), limit=Decimal("1"), limit_reset=parents)
    child, row = child_key_make(parent)
    ApiKey.objects.filter(pk=row.pk).update(limit=Decimal("1"), limit_reset=childs)

    # Both leave 1; what is left grows only when both have reset: never (either order; it said
    # the child's own period's end).
    assert _remaining(child) == (Decimal("1"), 1.0) and _reset_at(child) is None


def test_a_limit_removed_after_the_key_was_read_is_no_limit_not_an_error() -> None:
    _, key = manage_key_make(budget_organization_make(), limit=Decimal("1"), limit_reset="daily")
    ApiKey.objects.filter(pk=key.pk).update(limit=None)  # a PATCH between the fetch and the read

    # ``key`` still carries its old limit; its row has none (it was ``None - used``: a 500).
    assert key.limit is not None
    assert key_limit_remaining(key=key, now=timezone.now()) is None


def test_the_keys_own_window_from_yesterday_counts_as_empty() -> None:
    plaintext, key = manage_key_make(
        budget_organization_make(), limit=Decimal("1"), limit_reset="daily"
    )
    key_hold(plaintext, "0.9")
    yesterday = window_start("daily", timezone.now()) - timedelta(days=1)
    KeySpendWindow.objects.filter(key=key).update(window_start=yesterday)

    assert _remaining(plaintext) == (Decimal("1"), 1.0)
    key_hold(plaintext, "1")  # and the holds agree


def test_an_ancestors_window_from_yesterday_counts_as_empty() -> None:
    _, parent = manage_key_make(budget_organization_make(), limit=Decimal("1"), limit_reset="daily")
    child, row = child_key_make(parent)
    ApiKey.objects.filter(pk=row.pk).update(limit=None, limit_reset=None)  # its parent's only
    key_hold(child, "0.9")
    yesterday = window_start("daily", timezone.now()) - timedelta(days=1)
    KeySpendWindow.objects.filter(key=parent).update(window_start=yesterday)

    assert _remaining(child) == (Decimal("1"), 1.0)
    key_hold(child, "1")


def test_budget_aware_routing_ties_go_to_the_keys_own_window() -> None:
    window_spend_clear()
    _, parent = manage_key_make(budget_organization_make(), limit=Decimal("1"), limit_reset="daily")
    child, row = child_key_make(parent, limit=Decimal("1"), limit_reset="daily")
    ApiKey.objects.filter(pk=row.pk).update(budget_aware=True)
    key_hold(child, "0.5")  # both windows: 0.5 of 1

    routing = _routing_budget(child)

    assert routing["share"] == 0.5 and routing["window_of"] == "key"
    assert (routing["spent"], routing["limit"]) == ("0.50000000", "1.00000000")
