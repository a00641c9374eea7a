"""Concurrent holds of one worker share statements (``billing.holds``): fewer round trips and
account-row updates than requests, and exactly what holding them one by one would grant."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from billing import pg_async
from billing.models import CreditAccount, Reservation
from billing.services import ReservationRequest, credits_reserve_async
from routerhub.errors import InsufficientCredits
from tests.conftest import require_postgres
from tests.factories import funded_organization_make


@pytest.fixture
def one_connection(transactional_db: None, settings: Any) -> Iterator[None]:
    """One gateway connection per worker, so that concurrent holds queue for it; a
    statement-level trigger counts the UPDATE statements on hold rows (``CreditHold``)."""
    require_postgres()
    settings.GATEWAY_DB_CONNECTIONS = 1
    settings.GATEWAY_DB_TIMEOUT = 10.0
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE test_account_updates (at timestamptz DEFAULT now())")
        cursor.execute(
            "CREATE FUNCTION test_account_updated() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN INSERT INTO test_account_updates DEFAULT VALUES; RETURN NULL; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER test_account_updated AFTER UPDATE ON billing_credithold"
            " FOR EACH STATEMENT EXECUTE FUNCTION test_account_updated()"
        )
    yield
    pg_async.pg_close()
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER test_account_updated ON billing_credithold")
        cursor.execute("DROP FUNCTION test_account_updated()")
        cursor.execute("DROP TABLE test_account_updates")


def _account_updates() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM test_account_updates")
        return int(cursor.fetchone()[0])


def _request(organization: Any, amount: str) -> ReservationRequest:
    return ReservationRequest(
        organization_id=organization.pk,
        generation_id=f"gen-{uuid.uuid4().hex}",
        amount=Decimal(amount),
    )


async def _hold_all(requests: list[ReservationRequest]) -> list[str]:
    async def one(request: ReservationRequest) -> str:
        try:
            await credits_reserve_async(request)
        except InsufficientCredits:
            return "402"
        return "held"

    return list(await asyncio.gather(*(one(request) for request in requests)))


def test_concurrent_holds_share_account_updates(one_connection: None) -> None:
    organization = funded_organization_make("100")
    before = _account_updates()

    outcomes = asyncio.run(_hold_all([_request(organization, "0.05") for _ in range(40)]))

    assert outcomes == ["held"] * 40
    # One statement per request before: 40 updates of the one hold row.
    assert _account_updates() - before <= 4
    assert CreditAccount.objects.get(organization=organization).reserved == Decimal("2.00")
    assert Reservation.objects.filter(organization=organization, state="held").count() == 40


def test_grouped_holds_never_overspend(one_connection: None) -> None:
    organization = funded_organization_make("1.00")  # exactly 20 holds of 0.05

    outcomes = asyncio.run(_hold_all([_request(organization, "0.05") for _ in range(40)]))

    assert outcomes.count("held") == 20 and outcomes.count("402") == 20
    assert CreditAccount.objects.get(organization=organization).reserved == Decimal("1.00")
    assert Reservation.objects.filter(organization=organization).count() == 20


def test_a_group_grants_what_one_by_one_would_across_organizations(one_connection: None) -> None:
    first, second = funded_organization_make("1.00"), funded_organization_make("0.50")
    # In arrival order: 0.60 fits; 0.50 does not (0.40 left); 0.30 still does, alone.
    requests = [
        _request(first, "0.60"),
        _request(second, "0.40"),
        _request(first, "0.50"),
        _request(second, "0.20"),
        _request(first, "0.30"),
    ]

    outcomes = asyncio.run(_hold_all(requests))

    assert outcomes == ["held", "held", "402", "402", "held"]
    assert CreditAccount.objects.get(organization=first).reserved == Decimal("0.90")
    assert CreditAccount.objects.get(organization=second).reserved == Decimal("0.40")
    held = set(Reservation.objects.values_list("generation_id", flat=True))
    assert held == {requests[i].generation_id for i in (0, 1, 4)}


def test_holds_queued_behind_a_request_that_leaves_are_still_made(one_connection: None) -> None:
    organization = funded_organization_make("10")
    requests = [_request(organization, "0.10") for _ in range(4)]

    async def run() -> list[str]:
        busy = asyncio.ensure_future(pg_async.pg_fetchone("SELECT pg_sleep(0.3)", {}))
        await asyncio.sleep(0.05)  # the only connection is taken
        leader = asyncio.ensure_future(credits_reserve_async(requests[0]))
        await asyncio.sleep(0.01)  # it waits for the connection, leading the next group
        others = asyncio.ensure_future(_hold_all(requests[1:]))
        await asyncio.sleep(0.01)
        leader.cancel()  # its client went away
        await busy
        return await asyncio.wait_for(others, timeout=10)

    assert asyncio.run(run()) == ["held"] * 3
    held = set(Reservation.objects.values_list("generation_id", flat=True))
    assert held == {request.generation_id for request in requests[1:]}
    assert CreditAccount.objects.get(organization=organization).reserved == Decimal("0.30")
