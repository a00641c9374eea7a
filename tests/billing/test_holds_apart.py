"""Holds apart from the balance (``billing.models.CreditHold``): a reservation updates its
organization's hold row and only reads the account row, so it never waits for a settler's open
charge; ``balance + released`` never decreases, so what a reservation reads is conservative;
``reserved`` (``held - released``) and ``available`` show what they showed before."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.db.models import Sum

from accounts.models import Organization
from billing import pg_async
from billing.drafts import UsageDraft
from billing.models import CreditAccount, LedgerEntry, Reservation, ReservationState
from billing.services import (
    ReservationRequest,
    credits_reserve,
    credits_reserve_async,
    ledger_post,
)
from billing.settlement import reservations_release, usage_settle_batch
from routerhub.errors import InsufficientCredits
from tests.conftest import require_postgres
from tests.db_locks import waiting_on_a_lock
from tests.factories import funded_organization_make
from tests.routing.servers import SETTLE_TIMEOUT, poll


def _request(organization: Organization, amount: str) -> ReservationRequest:
    return ReservationRequest(organization_id=organization.pk,
                              generation_id=f"gen-{uuid.uuid4().hex}", amount=Decimal(amount))  # fmt: skip


def _draft(request: ReservationRequest, cost: str) -> UsageDraft:
    return UsageDraft(generation_id=request.generation_id, organization_id=request.organization_id,
                      key_id=request.key_id, status="succeeded", cost=Decimal(cost))  # fmt: skip


def _in_thread(work: Callable[[], object], done: threading.Event | None = None) -> threading.Thread:
    def run() -> None:
        try:
            work()
            if done is not None:
                done.set()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@contextmanager
def _charge_held_open(drafts: list[UsageDraft]) -> Iterator[threading.Event]:
    """A settler that charged ``drafts`` (its account-row UPDATE done) and has not committed
    until the block ends: a settler process waiting for a CPU between UPDATE and COMMIT. The
    event yielded is set once its transaction may end (the block ended, or a safety bound of
    twice the suite's poll passed)."""
    charged, release = threading.Event(), threading.Event()

    def settle_held_open() -> None:
        with transaction.atomic():
            usage_settle_batch(drafts)
            charged.set()
            release.wait(2 * SETTLE_TIMEOUT)
            release.set()

    settler = _in_thread(settle_held_open)
    assert charged.wait(60)
    try:
        yield release
    finally:
        release.set()
        settler.join(60)


def _reserve_sync(request: ReservationRequest) -> None:
    credits_reserve(request)


def _reserve_async(request: ReservationRequest) -> None:
    try:
        asyncio.run(credits_reserve_async(request))
    finally:
        pg_async.pg_close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["statement", "gateway"])
def test_a_reservation_completes_while_a_settlers_charge_is_open(path: str) -> None:
    """(A key with a credit limit still waits: its window row is settled in the same
    transaction, README "Credit holds apart from the balance".)"""
    require_postgres()
    organization = funded_organization_make("10")
    first, second = _request(organization, "1"), _request(organization, "0.5")
    credits_reserve(first)
    reserve = _reserve_async if path == "gateway" else _reserve_sync

    with _charge_held_open([_draft(first, "0.25")]) as settler_done:
        reserved = threading.Event()
        reserver = _in_thread(lambda: reserve(second), reserved)
        poll(reserved.is_set)
        assert not settler_done.is_set()  # it completed while the settler's charge was open
    reserver.join(60)

    account = CreditAccount.objects.select_related("hold").get(organization=organization)
    assert (account.balance, account.reserved) == (Decimal("9.75"), Decimal("0.5"))
    assert account.total_used == Decimal("0.25")
    ledger = LedgerEntry.objects.filter(organization=organization).aggregate(s=Sum("amount"))["s"]
    assert ledger == account.balance


@pytest.mark.django_db(transaction=True)
def test_a_reservation_judged_on_a_stale_balance_never_grants_past_a_charge_beyond_its_hold() -> (
    None
):
    """The reservation's snapshot of the account is from before an over-hold charge commits; it
    reads the hold row after (it waits for the charge's lock on it). The charge's excess is on
    the hold row too, so the stale balance cannot grant: refused with exactly what is left."""
    require_postgres()
    organization = funded_organization_make("1")
    over = _request(organization, "0.2")
    credits_reserve(over)
    outcome: list[str] = []

    def reserve() -> None:
        try:
            credits_reserve(_request(organization, "0.5"))
            outcome.append("held")
        except InsufficientCredits as refused:
            outcome.append(str(refused.metadata["available"]))

    with _charge_held_open([_draft(over, "0.9")]):  # balance 0.1 once it commits
        reserver = _in_thread(reserve)
        poll(waiting_on_a_lock)  # for the hold row, after its snapshot of the account
    reserver.join(60)

    assert outcome == ["0.10000000"]
    account = _books_agree(organization)
    assert (account.balance, account.reserved) == (Decimal("0.1"), Decimal("0"))


def _refused_available(request: ReservationRequest) -> str:
    with pytest.raises(InsufficientCredits) as refused:
        credits_reserve(request)
    return str(refused.value.metadata["available"])


@pytest.mark.django_db
def test_a_charge_beyond_its_hold_and_a_debit_lower_available_exactly() -> None:
    require_postgres()
    organization = funded_organization_make("1")
    over = _request(organization, "0.2")
    credits_reserve(over)
    usage_settle_batch([_draft(over, "0.5")])  # a provider counted past the bound
    credits_reserve(_request(organization, "0.3"))
    ledger_post(organization=organization, kind="refund", amount=Decimal("-0.1"),
                idempotency_key=f"debit:{organization.pk}")  # fmt: skip

    # balance 0.4, reserved 0.3: exactly 0.1 left, whatever the counters' history.
    account = CreditAccount.objects.select_related("hold").get(organization=organization)
    assert (account.balance, account.reserved) == (Decimal("0.4"), Decimal("0.3"))
    assert _refused_available(_request(organization, "0.10000001")) == "0.10000000"
    credits_reserve(_request(organization, "0.1"))
    assert _refused_available(_request(organization, "0.00000001")) == "0.00000000"


def _race(organization: Organization, worker: Callable[[random.Random], None]) -> None:
    threads = [_in_thread(lambda seed=seed: worker(random.Random(seed))) for seed in range(4)]
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)


def _books_agree(organization: Organization) -> CreditAccount:
    account = CreditAccount.objects.select_related("hold").get(organization=organization)
    ledger = LedgerEntry.objects.filter(organization=organization).aggregate(s=Sum("amount"))["s"]
    open_holds = Reservation.objects.filter(organization=organization, state=ReservationState.HELD)
    assert account.balance == ledger and account.balance >= 0
    assert account.reserved == (open_holds.aggregate(s=Sum("amount"))["s"] or 0)
    return account


def _available_now(organization_id: int) -> Decimal:
    with connections["default"].cursor() as cursor:  # one statement: one snapshot of both rows
        cursor.execute(
            "SELECT a.balance + a.released - h.held FROM billing_creditaccount a"
            " JOIN billing_credithold h USING (organization_id) WHERE organization_id = %s",
            [organization_id],
        )
        return Decimal(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_reservations_racing_settlements_and_top_ups_never_overcommit() -> None:
    """Costs within their holds and top-ups only: ``available`` may never go below zero."""
    require_postgres()
    organization = funded_organization_make("3")
    lowest: list[Decimal] = []

    def worker(rng: random.Random) -> None:
        for i in range(30):
            request = _request(organization, str(rng.choice(["0.1", "0.25", "0.4"])))
            try:
                credits_reserve(request)
            except InsufficientCredits:
                continue
            lowest.append(_available_now(organization.pk))
            if i % 10 == 9:
                ledger_post(organization=organization, kind="topup", amount=Decimal("0.5"),
                            idempotency_key=f"topup:{uuid.uuid4().hex}")  # fmt: skip
            if rng.random() < 0.2:
                reservations_release(list(Reservation.objects.filter(
                    generation_id=request.generation_id)))  # fmt: skip
            else:
                usage_settle_batch([_draft(request, str(request.amount * Decimal("0.5")))])

    _race(organization, worker)

    account = _books_agree(organization)
    assert account.reserved == 0 and min(lowest) >= 0
    assert _available_now(organization.pk) == account.balance


@pytest.mark.django_db(transaction=True)
def test_reservations_racing_over_hold_charges_and_debits_keep_the_books() -> None:
    require_postgres()
    organization = funded_organization_make("5")
    left_open: list[ReservationRequest] = []

    def worker(rng: random.Random) -> None:
        for i in range(30):
            request = _request(organization, str(rng.choice(["0.1", "0.3"])))
            try:
                credits_reserve(request)
            except InsufficientCredits:
                continue
            if i % 7 == 3:
                ledger_post(organization=organization, kind="refund", amount=Decimal("-0.2"),
                            idempotency_key=f"debit:{uuid.uuid4().hex}")  # fmt: skip
            if i % 5 == 4:
                left_open.append(request)
                continue
            cost = request.amount * Decimal(rng.choice(["0.5", "1", "2"]))  # 2: beyond the hold
            usage_settle_batch([_draft(request, str(cost))])

    _race(organization, worker)

    account = _books_agree(organization)
    assert account.reserved == sum(r.amount for r in left_open)
    usage_settle_batch([_draft(r, "0") for r in left_open])
    account = _books_agree(organization)
    assert account.reserved == 0 and _available_now(organization.pk) == account.balance
