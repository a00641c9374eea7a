"""A request is charged the provider's usage at list price, whatever its hold: the hold is a true
upper bound of the prompt (its UTF-8 bytes), and a charge above the hold is still taken (down to a
zero balance) and flagged on the usage record, never silently dropped."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.db.models import Sum
from django.test import Client

from accounts.models import KeyScope
from billing.models import CreditAccount, LedgerEntry, Reservation
from billing.services import ledger_post
from routerhub.money import money
from tests.factories import key_client, key_make, user_make
from tests.routing.conftest import _fresh_gateway_state, fake_server, gateway_server, world
from tests.routing.servers import poll
from tests.routing.world import World, endpoint, model

__all__ = ["_fresh_gateway_state", "fake_server", "gateway_server", "world"]

INPUT, OUTPUT = Decimal("3"), Decimal("15")  # USD per 1M tokens


def add_model(world: World, model_id: str, upstream: str) -> None:
    world.catalog({"models": [model(model_id)],
                   "endpoints": [endpoint(model_id, "fake-openai", upstream, str(INPUT), str(OUTPUT))]})  # fmt: skip


def chat(world: World, body: dict[str, Any]) -> httpx.Response:
    response = httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {world.key}"}, timeout=60)  # fmt: skip
    assert response.status_code == 200, response.text
    return response


def list_price(prompt_tokens: int, completion_tokens: int) -> Decimal:
    return money((prompt_tokens * INPUT + completion_tokens * OUTPUT) / 1_000_000)


def assert_books_balance(world: World) -> None:
    poll(lambda: not Reservation.objects.filter(state="held").exists())
    account = CreditAccount.objects.get(organization=world.organization)
    ledger = LedgerEntry.objects.filter(organization=world.organization).aggregate(s=Sum("amount"))
    assert account.balance == ledger["s"] and account.balance >= 0 and account.reserved == 0


@pytest.mark.parametrize(
    "text",
    ["你好世界" * 10_000, "😀" * 30_000],  # 3 and 4 UTF-8 bytes a character; 120 KB each
    ids=["cjk", "emoji"],
)
def test_a_prompt_of_several_tokens_a_character_is_charged_its_full_list_price(
    world: World, text: str
) -> None:
    # The fake counts a token per UTF-8 byte, the most a byte-level BPE tokenizer can give.
    add_model(world, "test/bytes", "gpt-4o-mini@tokenizer=bytes")

    response = chat(world, {"model": "test/bytes", "max_tokens": 20,
                            "messages": [{"role": "user", "content": text}]})  # fmt: skip

    usage = response.json()["usage"]
    assert usage["prompt_tokens"] >= len(text.encode())  # what the provider counted
    record = world.usage_record(response.json()["id"])
    expected = list_price(usage["prompt_tokens"], usage["completion_tokens"])
    assert record.cost == expected == Decimal(str(usage["cost"]))
    charge = LedgerEntry.objects.get(idempotency_key=f"usage:{record.generation_id}")
    assert charge.amount == -expected
    # The hold covered it: the bound held, nothing to flag.
    assert Reservation.objects.get(generation_id=record.generation_id).amount >= expected
    assert record.flags == ""
    assert_books_balance(world)


def test_a_prompt_count_past_a_too_small_catalog_window_is_billed_as_reported(world: World) -> None:
    """Found by the re-attack: a count above the catalog's context window was called impossible
    and billed at characters / 3, a third of what a CJK prompt really costs. Only a count above
    the prompt's byte bound is impossible."""
    world.catalog({"models": [model("test/stale") | {"context_length": 1000}],
                   "endpoints": [endpoint("test/stale", "fake-openai", "gpt-4o-mini@tokenizer=bytes",
                                          str(INPUT), str(OUTPUT))]})  # fmt: skip
    text = "你好世界" * 1_000  # 12,000 bytes, one word: planning cannot tell it overflows 1,000

    response = chat(world, {"model": "test/stale", "max_tokens": 20,
                            "messages": [{"role": "user", "content": text}]})  # fmt: skip

    usage = response.json()["usage"]
    assert usage["prompt_tokens"] >= len(text.encode()) > 1000
    record = world.usage_record(response.json()["id"])
    assert record.prompt_tokens == usage["prompt_tokens"]
    assert record.cost == list_price(usage["prompt_tokens"], usage["completion_tokens"])
    assert record.flags == ""
    assert_books_balance(world)


def test_a_charge_above_its_hold_is_taken_in_full_and_flagged(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    settings.REDIS_URL = world.redis_url  # through the Redis outbox, as in production
    # 50,000 output tokens reported for max_tokens=10: hidden reasoning, or a broken host.
    add_model(world, "test/overrun", "gpt-4o-mini@report_completion=50000")
    before = CreditAccount.objects.get(organization=world.organization).balance

    response = chat(world, {"model": "test/overrun", "max_tokens": 10,
                            "messages": [{"role": "user", "content": "Say hi."}]})  # fmt: skip

    usage = response.json()["usage"]
    expected = list_price(usage["prompt_tokens"], 50_000)
    record = world.usage_record(response.json()["id"])
    hold = Reservation.objects.get(generation_id=record.generation_id).amount
    assert hold < expected
    assert record.cost == expected == Decimal(str(usage["cost"]))
    assert record.flag_list == ["over_hold"]
    account = CreditAccount.objects.get(organization=world.organization)
    assert account.balance == before - expected
    assert_books_balance(world)


def test_a_charge_the_balance_cannot_cover_takes_it_to_zero_and_flags_the_shortfall(
    world: World, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.REDIS_URL = world.redis_url
    add_model(world, "test/overrun", "gpt-4o-mini@report_completion=50000")
    # Leave $0.05: enough for the request's hold, not for the $0.75 the provider reports.
    ledger_post(organization=world.organization, kind="adjustment", amount=Decimal("-9.95"),
                idempotency_key="leave-five-cents")  # fmt: skip

    response = chat(world, {"model": "test/overrun", "max_tokens": 10,
                            "messages": [{"role": "user", "content": "Say hi."}]})  # fmt: skip

    generation_id = response.json()["id"]
    record = world.usage_record(generation_id)
    assert Decimal(str(response.json()["usage"]["cost"])) > Decimal("0.05")
    assert record.cost == Decimal("0.05")  # what was charged: all there was
    assert record.flag_list == ["over_hold", "shortfall"]
    assert CreditAccount.objects.get(organization=world.organization).balance == 0
    assert LedgerEntry.objects.get(idempotency_key=f"usage:{generation_id}").amount == Decimal(
        "-0.05"
    )
    assert_books_balance(world)
    # The flags are where people look: the generation API and the usage export.
    generation = key_client(world.key).get(f"/api/v1/generation?id={generation_id}").json()
    assert generation["flags"] == ["over_hold", "shortfall"]
    manage = key_client(key_make(world.organization, scope=KeyScope.MANAGE))
    export = manage.get("/api/v1/usage/export.csv")
    rows = csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode()))
    assert {r["id"]: r["flags"] for r in rows}[generation_id] == "over_hold,shortfall"
    # And in the admin, filtered by flag.
    operator = user_make()
    operator.is_staff = operator.is_superuser = True
    operator.save(update_fields=["is_staff", "is_superuser"])
    admin = Client()
    admin.force_login(operator)
    flagged = admin.get("/admin/billing/usagerecord/?flag=shortfall")
    unflagged = admin.get("/admin/billing/usagerecord/?flag=usage_clamped")
    assert flagged.status_code == unflagged.status_code == 200
    assert generation_id in flagged.content.decode()
    assert generation_id not in unflagged.content.decode()
