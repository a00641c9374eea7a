"""``billing.key_windows_reconcile`` sets key spend windows' ``reserved`` to their open holds.

Before holds recorded a key's own never-resetting window, settlement never released it: such
windows in production still carry long-settled holds in ``reserved``. During a rolling deploy an
older settler ignores ``ancestor_windows``, leaving the ancestors' ``reserved`` stale. The task
repairs both, and leaves ``spent`` and the holds still open alone.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import cache

from billing.models import KeySpendWindow, Reservation
from billing.tasks import key_windows_reconcile
from billing.window_repair import CURSOR
from billing.window_repair import key_windows_reconcile as reconcile_batch
from tests.billing.key_budgets import (
    budget_organization_make,
    key_hold,
    key_settle,
    key_window,
    lifetime_key_make,
    manage_key_make,
)
from tests.factories import child_key_make

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _from_the_start() -> None:
    cache.delete(CURSOR)


def _inflate(key_id: int, reserved: str) -> None:
    KeySpendWindow.objects.filter(key_id=key_id).update(reserved=Decimal(reserved))


def test_a_never_resetting_window_with_no_open_hold_is_released_of_its_stale_holds() -> None:
    plaintext, key = lifetime_key_make("1")
    key_settle(plaintext, key_hold(plaintext, "0.2"), "0.1")
    _inflate(key.pk, "0.9")  # what settlement before the fix left behind

    assert key_windows_reconcile() == 1
    assert key_window(key) == (Decimal("0.1"), 0)  # spent untouched
    assert key_windows_reconcile() == 0


def test_a_never_resetting_window_keeps_its_open_hold() -> None:
    plaintext, key = lifetime_key_make("1")
    held = key_hold(plaintext, "0.2")
    _inflate(key.pk, "0.9")

    key_windows_reconcile()
    assert key_window(key) == (0, Decimal("0.2"))

    # A hold taken before windows were always recorded counts there too (``legacy_never_reset``).
    Reservation.objects.filter(generation_id=held).update(ancestor_windows=None)
    _inflate(key.pk, "0.9")
    key_windows_reconcile()
    assert key_window(key) == (0, Decimal("0.2"))


def test_an_ancestor_window_keeps_an_open_hold_of_its_child_and_loses_stale_ones() -> None:
    _, parent = manage_key_make(budget_organization_make(), limit=Decimal("2"), limit_reset="daily")
    child, child_row = child_key_make(parent)
    held = key_hold(child, "0.2")
    _inflate(parent.pk, "0.9")  # stale holds an older settler never released there

    key_windows_reconcile()
    assert key_window(parent) == (0, Decimal("0.2"))
    assert key_window(child_row) == (0, Decimal("0.2"))

    key_settle(child, held, "0.1")
    _inflate(parent.pk, "0.2")  # as a settler ignoring ancestor_windows would leave it
    key_windows_reconcile()
    assert key_window(parent) == (Decimal("0.1"), 0)


def test_a_run_reconciles_a_bounded_batch_and_the_next_goes_on_after_it() -> None:
    keys = [lifetime_key_make("1")[1] for _ in range(2)]
    for key in keys:
        KeySpendWindow.objects.create(key=key, window_start=None, reserved=Decimal("0.5"))

    assert reconcile_batch(batch=1) == 1
    assert [key_window(k)[1] for k in keys] == [0, Decimal("0.5")]
    assert reconcile_batch(batch=1) == 1
    assert [key_window(k)[1] for k in keys] == [0, 0]


def test_settlement_warns_with_the_key_id_when_a_window_held_less_than_it_releases(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plaintext, key = lifetime_key_make("1")
    held = key_hold(plaintext, "0.2")
    _inflate(key.pk, "0.1")  # a window that no longer counts all of the hold

    with caplog.at_level("WARNING", logger="billing.settlement"):
        key_settle(plaintext, held, "0.1")
    assert key_window(key) == (Decimal("0.1"), 0)  # never below zero
    assert [r.getMessage() for r in caplog.records if r.name == "billing.settlement"] == [
        f"key spend windows held less than the holds released for keys [{key.pk}]"
    ]
