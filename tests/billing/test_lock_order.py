"""Every transaction that locks them takes an organization's credit account, then its hold row
(``CreditHold``), then a key's spend window (``billing.settlement``'s module docstring names the
one order): settlement, and the ORM reservation path of keys with a credit limit (which takes the
hold row, never the account). Two transactions taking them in opposite orders
deadlock under load; here each transaction is stopped at the account row (held by another
transaction) and the window must still be free, so it cannot be holding it while it waits."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Model

from accounts.keys import key_authenticate
from accounts.models import ApiKey
from billing.drafts import UsageDraft
from billing.models import CreditAccount, CreditHold, KeySpendWindow
from billing.services import ReservationRequest, credits_reserve
from billing.settlement import usage_settle_batch
from tests.billing.key_budgets import (
    budget_organization_make,
    key_hold,
    key_window,
    manage_key_make,
)
from tests.conftest import require_postgres
from tests.db_locks import LOCK_WAITS_SQL, waiting_on_a_lock
from tests.factories import child_key_make, funded_organization_make, key_make
from tests.routing.servers import poll


def _window_is_free(key_id: int) -> bool:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '200ms'")
        try:
            cursor.execute(
                "SELECT 1 FROM billing_keyspendwindow WHERE key_id = %s FOR UPDATE NOWAIT",
                [key_id],
            )
        except Exception:  # psycopg's LockNotAvailable, wrapped by Django
            return False
    return True


@contextmanager
def _account_held(organization_id: int, model: type[Model] = CreditAccount) -> Iterator[None]:
    """Another transaction holds the organization's account row (or ``model``'s row, keyed by
    the organization) until the block ends."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                model._default_manager.select_for_update().get(pk=organization_id)
                held.set()
                release.wait(60)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(60)
    try:
        yield
    finally:
        release.set()
        holder.join(60)


def _in_thread(work: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        try:
            work()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _limited_key_reservation(amount: str) -> tuple[ReservationRequest, ApiKey]:
    organization = funded_organization_make("10")
    key_make(organization, limit=Decimal("5"), limit_reset="daily")
    key = ApiKey.objects.get(organization=organization)
    request = ReservationRequest(organization_id=organization.pk,
                                 generation_id=f"gen-{uuid.uuid4().hex}", amount=Decimal(amount),
                                 key_id=key.pk, key_limit=key.limit, key_limit_reset="daily")  # fmt: skip
    return request, key


@pytest.mark.django_db(transaction=True)
def test_settlement_waits_for_the_account_before_it_touches_the_key_window() -> None:
    require_postgres()
    request, key = _limited_key_reservation("1")
    credits_reserve(request)  # the window row exists, holding 1
    draft = UsageDraft(generation_id=request.generation_id, organization_id=request.organization_id,
                       key_id=key.pk, status="succeeded", cost=Decimal("0.5"))  # fmt: skip

    with _account_held(request.organization_id):
        settler = _in_thread(lambda: usage_settle_batch([draft]))
        poll(waiting_on_a_lock)
        assert _window_is_free(key.pk)
    settler.join(60)

    window = KeySpendWindow.objects.get(key_id=key.pk)
    assert (window.spent, window.reserved) == (Decimal("0.5"), Decimal("0"))


@pytest.mark.django_db(transaction=True)
def test_a_limited_keys_reservation_waits_for_the_hold_row_before_it_touches_the_window() -> None:
    require_postgres()
    first, key = _limited_key_reservation("1")
    credits_reserve(first)  # the window row exists
    second = ReservationRequest(**{**first.__dict__, "generation_id": f"gen-{uuid.uuid4().hex}"})

    with _account_held(first.organization_id, CreditHold):
        reserver = _in_thread(lambda: credits_reserve(second))
        poll(waiting_on_a_lock)
        assert _window_is_free(key.pk)
    reserver.join(60)

    assert KeySpendWindow.objects.get(key_id=key.pk).reserved == Decimal("2")


def _lock_waits() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(LOCK_WAITS_SQL)
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_a_childs_hold_and_a_settlement_of_its_tree_take_the_windows_in_one_order() -> None:
    """A child's hold and a settlement over its parent's and its own windows both take them in
    key id order (parent first). Held up at the parent's window, a hold that took the child's
    first would wait there holding it; the settlement, first in line for the parent's, would
    then wait for the child's: PostgreSQL's deadlock error for one of them."""
    require_postgres()
    _, parent = manage_key_make(budget_organization_make(), limit=Decimal("5"), limit_reset="daily")
    child, child_row = child_key_make(parent)
    held = key_hold(child, "1")  # both windows exist, holding 1
    key = key_authenticate(child)
    request = ReservationRequest(organization_id=key.organization_id,
                                 generation_id=f"gen-{uuid.uuid4().hex}", amount=Decimal("1"),
                                 key_id=key.id, key_limit=key.limit,
                                 key_limit_reset=key.limit_reset, ancestors=key.ancestors)  # fmt: skip
    draft = UsageDraft(generation_id=held, organization_id=key.organization_id,
                       key_id=key.id, status="succeeded", cost=Decimal("0.5"))  # fmt: skip
    errors: list[Exception] = []

    def guarded(work: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except Exception as error:  # the deadlock, raised in its thread
                errors.append(error)

        return run

    with _account_held(parent.pk, KeySpendWindow):  # the parent's window row
        settler = _in_thread(guarded(lambda: usage_settle_batch([draft])))
        poll(lambda: _lock_waits() >= 1)
        reserver = _in_thread(guarded(lambda: credits_reserve(request)))
        poll(lambda: _lock_waits() >= 2)
    settler.join(60)
    reserver.join(60)

    assert errors == []
    assert key_window(parent) == (Decimal("0.5"), Decimal("1"))
    assert key_window(child_row) == (Decimal("0.5"), Decimal("1"))
