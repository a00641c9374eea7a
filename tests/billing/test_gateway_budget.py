"""The budget promise through the real gateway: under 200 concurrent requests no organization or
key spends past its limit, and every success is billed exactly once."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest
from django.db.models import Sum

from accounts.models import ApiKey
from billing.models import CreditAccount, LedgerEntry, Reservation, UsageRecord
from billing.services import ledger_post
from routing.gateway.token_bounds import prompt_token_bound
from tests.conftest import require_postgres
from tests.factories import key_make, organization_make
from tests.routing.conftest import _fresh_gateway_state, fake_server, gateway_server, world
from tests.routing.servers import poll
from tests.routing.world import World, endpoint, model

__all__ = ["_fresh_gateway_state", "fake_server", "gateway_server", "world"]

BODY = {
    "model": "test/slow",
    "max_tokens": 50,
    "messages": [{"role": "user", "content": "Count to ten."}],
}


def slow_model(world: World) -> None:
    # Every request stays in flight long enough for all 200 to hold credit at once, and reports
    # the most tokens its hold allowed for, so it costs its hold exactly: one that finishes before
    # the last is admitted (a loaded machine) frees nothing, and the count bound below is exact.
    upstream = (f"gpt-4o-mini@delay=1500,report_prompt={prompt_token_bound(BODY)},"
                f"report_completion={BODY['max_tokens']}")  # fmt: skip
    world.catalog({"models": [model("test/slow")],
                   "endpoints": [endpoint("test/slow", "fake-openai", upstream, "100", "200")]})  # fmt: skip


def hold_per_request(world: World, key: str) -> Decimal:
    response = httpx.post(f"{world.gateway_url}/v1/chat/completions", json=BODY,
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
    assert response.status_code == 200, response.text
    return Reservation.objects.get(generation_id=response.json()["id"]).amount


async def fire(world: World, key: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=world.gateway_url, limits=limits, timeout=60) as client:
        return await asyncio.gather(*(
            client.post("/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"})
            for _ in range(n)
        ))  # fmt: skip


def assert_books_balance(organization_id: int, successes: list[httpx.Response]) -> None:
    ids = [r.json()["id"] for r in successes]
    poll(lambda: UsageRecord.objects.filter(generation_id__in=ids).count() == len(ids), timeout=30)
    account = CreditAccount.objects.get(organization_id=organization_id)
    ledger = LedgerEntry.objects.filter(organization_id=organization_id).aggregate(s=Sum("amount"))[
        "s"
    ]
    assert account.balance >= 0 and account.balance == ledger
    poll(
        lambda: (
            not Reservation.objects.filter(organization_id=organization_id, state="held").exists()
        )
    )
    assert CreditAccount.objects.get(organization_id=organization_id).reserved == 0
    for response in successes:
        generation_id = response.json()["id"]
        record = UsageRecord.objects.get(generation_id=generation_id)
        charge = LedgerEntry.objects.get(idempotency_key=f"usage:{generation_id}")
        assert charge.amount == -record.cost
        assert Decimal(str(response.json()["usage"]["cost"])) == record.cost


@pytest.mark.parametrize("limit_on", ["balance", "key"])
def test_concurrent_requests_never_spend_past_the_balance_or_key_limit(
    world: World, limit_on: str
) -> None:
    require_postgres()
    slow_model(world)
    organization = organization_make(name="Budget")
    ledger_post(
        organization=organization, kind="promotion", amount=Decimal("1000"), idempotency_key="probe"
    )
    hold = hold_per_request(world, key_make(organization))
    budgeted = organization_make(name="Budgeted")
    if limit_on == "balance":
        ledger_post(
            organization=budgeted, kind="promotion", amount=hold * 50, idempotency_key="exact-50"
        )
        key = key_make(budgeted)
    else:
        ledger_post(
            organization=budgeted,
            kind="promotion",
            amount=Decimal("1000"),
            idempotency_key="plenty",
        )
        key = key_make(budgeted, limit=hold * 50, limit_reset="daily")

    responses = asyncio.run(fire(world, key, 200))

    statuses = [r.status_code for r in responses]
    refused = 402 if limit_on == "balance" else 403
    successes = [r for r in responses if r.status_code == 200]
    cost = Decimal(str(successes[0].json()["usage"]["cost"]))
    assert cost == hold  # so a success that finished early freed nothing
    assert 45 <= len(successes) <= 50  # all in flight at once: ~exactly 50
    assert statuses.count(refused) == 200 - len(successes), sorted(set(statuses))
    assert all(r.json()["error"]["code"] == refused for r in responses if r.status_code != 200)
    assert_books_balance(budgeted.pk, successes)
    if limit_on == "key":
        key_row = ApiKey.objects.get(organization=budgeted)
        spent = UsageRecord.objects.filter(key=key_row).aggregate(s=Sum("cost"))["s"]
        assert spent <= key_row.limit
