"""The money promises: no request unbilled, none billed twice, no balance or key limit overspent."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.db import OperationalError, connection
from django.db.models import Sum
from django.utils import timezone

from accounts.models import ApiKey
from billing.drafts import UsageDraft
from billing.models import CreditAccount, KeySpendWindow, LedgerEntry, Reservation, UsageRecord
from billing.services import (
    ReservationRequest,
    credits_reserve,
    ledger_post,
    reservation_mark_free_async,
    reservations_sweep,
)
from billing.settlement import usage_settle
from routerhub.errors import InsufficientCredits, KeyLimitReached
from tests.conftest import require_postgres
from tests.factories import key_make, organization_make


def _grant(organization, amount: str, key: str = "grant") -> None:
    ledger_post(
        organization=organization,
        kind="promotion",
        amount=Decimal(amount),
        idempotency_key=f"{key}:{organization.pk}",
    )


def _request(organization, amount: str, key: ApiKey | None = None) -> ReservationRequest:
    return ReservationRequest(
        organization_id=organization.pk,
        generation_id=f"gen-{uuid.uuid4().hex}",
        amount=Decimal(amount),
        key_id=key.pk if key else None,
        key_limit=key.limit if key else None,
        key_limit_reset=key.limit_reset if key else None,
    )


def _assert_books_balance(organization) -> None:
    account = CreditAccount.objects.get(organization=organization)
    ledger_sum = LedgerEntry.objects.filter(organization=organization).aggregate(s=Sum("amount"))[
        "s"
    ]
    assert account.balance >= 0
    assert account.balance == ledger_sum
    for record in UsageRecord.objects.filter(organization=organization, cost__gt=0):
        charge = LedgerEntry.objects.get(idempotency_key=f"usage:{record.generation_id}")
        assert charge.amount == -record.cost


@pytest.mark.django_db
def test_ledger_post_is_idempotent_and_the_balance_is_the_ledger_sum():
    organization = organization_make()

    first = ledger_post(
        organization=organization, kind="topup", amount=Decimal("10"), idempotency_key="pay-1"
    )
    again = ledger_post(
        organization=organization, kind="topup", amount=Decimal("10"), idempotency_key="pay-1"
    )
    ledger_post(
        organization=organization, kind="refund", amount=Decimal("-25"), idempotency_key="refund-1"
    )

    account = CreditAccount.objects.get(organization=organization)
    assert first.pk == again.pk
    assert account.balance == Decimal("0") and account.total_purchased == Decimal("10")
    assert LedgerEntry.objects.get(idempotency_key="refund-1").amount == Decimal("-10")
    _assert_books_balance(organization)


@pytest.mark.django_db
def test_reservation_beyond_the_available_balance_is_402_and_holds_nothing():
    organization = organization_make()
    _grant(organization, "1")
    credits_reserve(_request(organization, "0.6"))

    with pytest.raises(InsufficientCredits) as refused:
        credits_reserve(_request(organization, "0.5"))

    assert refused.value.metadata["available"] == "0.40000000"
    assert CreditAccount.objects.get(organization=organization).reserved == Decimal("0.6")


@pytest.mark.django_db
def test_settle_charges_the_real_cost_once_and_releases_the_rest():
    organization = organization_make()
    _grant(organization, "1")
    request = _request(organization, "0.5")
    credits_reserve(request)
    draft = UsageDraft(
        generation_id=request.generation_id,
        organization_id=organization.pk,
        key_id=None,
        status="succeeded",
        cost=Decimal("0.12345678"),
        model="demo/small",
        prompt_tokens=10,
        completion_tokens=20,
    )

    usage_settle(draft)
    usage_settle(draft)  # a retry (outbox redelivery) changes nothing

    account = CreditAccount.objects.get(organization=organization)
    assert account.reserved == 0
    assert account.balance == Decimal("0.87654322")
    assert UsageRecord.objects.filter(generation_id=request.generation_id).count() == 1
    assert Reservation.objects.get(generation_id=request.generation_id).state == "settled"
    _assert_books_balance(organization)


@pytest.mark.django_db
def test_key_limit_is_enforced_per_window_and_counts_holds():
    organization = organization_make()
    _grant(organization, "100")
    key_make(organization, limit=Decimal("1"), limit_reset="daily")
    key = ApiKey.objects.get(organization=organization)
    credits_reserve(_request(organization, "0.7", key))

    with pytest.raises(KeyLimitReached) as refused:
        credits_reserve(_request(organization, "0.4", key))

    assert refused.value.metadata["remaining"] == "0.30000000"
    assert CreditAccount.objects.get(organization=organization).reserved == Decimal("0.7")


def _expire(request: ReservationRequest) -> None:
    Reservation.objects.filter(generation_id=request.generation_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


@pytest.mark.django_db(transaction=True)
def test_the_sweep_charges_a_hold_whose_usage_never_arrived_and_a_late_draft_charges_nothing():
    """A served request whose usage draft was lost (a Redis without its data) is charged at its
    hold, flagged, never released for free (a regression: the sweep released every expired hold
    uncharged); the draft showing up afterwards charges nothing more."""
    organization = organization_make()
    _grant(organization, "1")
    key_make(organization, limit=Decimal("5"), limit_reset="daily")
    key = ApiKey.objects.get(organization=organization)
    request = _request(organization, "0.9", key)
    credits_reserve(request)
    _expire(request)

    assert reservations_sweep() == 1

    record = UsageRecord.objects.get(generation_id=request.generation_id)
    assert record.flag_list == ["reconciled_from_hold"] and record.cost == Decimal("0.9")
    assert record.key_id == key.pk and record.status == "succeeded"
    account = CreditAccount.objects.get(organization=organization)
    assert account.balance == Decimal("0.1") and account.reserved == 0
    assert Reservation.objects.get(generation_id=request.generation_id).state == "settled"
    window = KeySpendWindow.objects.get(key=key)
    assert window.spent == Decimal("0.9") and window.reserved == 0
    _assert_books_balance(organization)

    late = UsageDraft(generation_id=request.generation_id, organization_id=organization.pk,
                      key_id=key.pk, status="succeeded", cost=Decimal("0.3"))  # fmt: skip
    usage_settle(late)
    assert reservations_sweep(now=timezone.now() + timedelta(days=1)) == 0

    assert LedgerEntry.objects.filter(reference=request.generation_id).count() == 1
    assert CreditAccount.objects.get(organization=organization).balance == Decimal("0.1")
    record = UsageRecord.objects.get(generation_id=request.generation_id)
    assert (record.cost, record.flag_list) == (Decimal("0.9"), ["reconciled_from_hold"])
    _assert_books_balance(organization)


@pytest.mark.django_db(transaction=True)
def test_the_sweep_releases_for_free_a_hold_the_gateway_marked_as_nothing_to_charge():
    """A request that failed before any answer is marked ``free`` in PostgreSQL when its draft is
    handed over: its hold is released without a charge even if the draft is lost."""
    organization = organization_make()
    _grant(organization, "1")
    failed, served = _request(organization, "0.4"), _request(organization, "0.5")
    credits_reserve(failed)
    credits_reserve(served)
    async_to_sync(reservation_mark_free_async)(failed.generation_id)
    _expire(failed)
    _expire(served)

    assert reservations_sweep() == 2

    assert Reservation.objects.get(generation_id=failed.generation_id).state == "released"
    assert not UsageRecord.objects.filter(generation_id=failed.generation_id).exists()
    assert not LedgerEntry.objects.filter(reference=failed.generation_id).exists()
    assert UsageRecord.objects.get(generation_id=served.generation_id).cost == Decimal("0.5")
    account = CreditAccount.objects.get(organization=organization)
    assert account.balance == Decimal("0.5") and account.reserved == 0
    # Its draft arriving late is recorded, still for nothing.
    usage_settle(UsageDraft(generation_id=failed.generation_id, organization_id=organization.pk,
                            key_id=None, status="failed"))  # fmt: skip
    assert CreditAccount.objects.get(organization=organization).balance == Decimal("0.5")
    _assert_books_balance(organization)


@pytest.mark.django_db(transaction=True)
def test_a_hold_marked_free_is_released_by_its_draft_like_any_other():
    organization = organization_make()
    _grant(organization, "1")
    request = _request(organization, "0.4")
    credits_reserve(request)
    async_to_sync(reservation_mark_free_async)(request.generation_id)

    usage_settle(UsageDraft(generation_id=request.generation_id, organization_id=organization.pk,
                            key_id=None, status="failed"))  # fmt: skip

    assert Reservation.objects.get(generation_id=request.generation_id).state == "released"
    assert CreditAccount.objects.get(organization=organization).reserved == 0
    assert reservations_sweep(now=timezone.now() + timedelta(days=1)) == 0


def _reserve_and_settle(organization_id: int, key: ApiKey | None, cost: Decimal) -> str:
    request = ReservationRequest(
        organization_id=organization_id,
        generation_id=f"gen-{uuid.uuid4().hex}",
        amount=cost,
        key_id=key.pk if key else None,
        key_limit=key.limit if key else None,
        key_limit_reset=key.limit_reset if key else None,
    )
    try:
        credits_reserve(request)
    except InsufficientCredits:
        return "402"
    except KeyLimitReached:
        return "403"
    usage_settle(
        UsageDraft(
            generation_id=request.generation_id,
            organization_id=organization_id,
            key_id=key.pk if key else None,
            status="succeeded",
            cost=cost,
            model="demo/small",
        )
    )
    return "200"


# How long a racing thread waits for PostgreSQL to accept its connection: the server's
# ``max_connections`` is shared with every other test run on the machine.
_CONNECT_WITHIN_S = 20.0


def _connect_when_admitted() -> None:
    """Open this thread's connection, waiting while PostgreSQL refuses it for want of slots
    ("too many clients": other test runs hold them), as a client retries the 503 it would get."""
    deadline = time.monotonic() + _CONNECT_WITHIN_S
    while True:
        try:
            connection.ensure_connection()
            return
        except OperationalError as exc:
            if "too many" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.05)  # a slot frees when another run's connection closes: poll for it


def _race(requests: int, threads: int, attempt: Callable[[], str]) -> list[str]:
    """Make ``requests`` attempts from ``threads`` threads that each hold one connection for the
    whole race and start together (a barrier once every thread is connected): connection setup
    is not part of the race, and no attempt opens a connection of its own."""
    ready = threading.Barrier(threads)
    left = iter(range(requests))
    claim = threading.Lock()
    outcomes: list[str] = []

    def racer() -> None:
        try:
            _connect_when_admitted()
            ready.wait(timeout=_CONNECT_WITHIN_S + 10)
            while True:
                with claim:
                    if next(left, None) is None:
                        return
                outcomes.append(attempt())
        finally:
            connection.close()  # each thread's own connection

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for started in [pool.submit(racer) for _ in range(threads)]:
            started.result()
    return outcomes


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("limit_on", ["balance", "key"])
def test_200_concurrent_requests_never_overspend(limit_on):
    require_postgres()
    organization = organization_make()
    cost = Decimal("0.01")
    key = None
    if limit_on == "balance":
        _grant(organization, "0.50")  # exactly 50 requests
    else:
        _grant(organization, "100")
        key_make(organization, limit=Decimal("0.50"), limit_reset="monthly")
        key = ApiKey.objects.get(organization=organization)

    outcomes = _race(200, 32, lambda: _reserve_and_settle(organization.pk, key, cost))

    refused = "402" if limit_on == "balance" else "403"
    assert outcomes.count("200") == 50
    assert outcomes.count(refused) == 150
    assert UsageRecord.objects.filter(organization=organization).count() == 50
    account = CreditAccount.objects.get(organization=organization)
    assert account.reserved == 0
    _assert_books_balance(organization)
