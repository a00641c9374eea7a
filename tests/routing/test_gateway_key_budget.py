"""Over HTTP: a key a management key made spends against that key's limit too (a hierarchical
budget, ``billing.key_windows``), read with the key in the gateway's one lookup statement."""

from __future__ import annotations

import httpx

from accounts.key_lookup import key_lookup_count
from accounts.models import ApiKey, KeyScope
from billing.models import KeySpendWindow, Reservation, UsageRecord
from routerhub.money import money
from tests.factories import key_client
from tests.routing.servers import poll
from tests.routing.world import World

HELLO = {"model": "test/gpt", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 500}


def post(world: World, key: str) -> httpx.Response:
    return httpx.post(f"{world.gateway_url}/v1/chat/completions", json=HELLO,
                      headers={"Authorization": f"Bearer {key}"})  # fmt: skip


def settled(world: World, response: httpx.Response) -> UsageRecord:
    """The request's usage record, once settled (after the response is sent)."""
    assert response.status_code == 200, response.text
    return poll(lambda: UsageRecord.objects.filter(generation_id=response.json()["id"]).first())


def test_two_children_of_a_management_key_cannot_together_spend_past_its_limit(
    world: World,
) -> None:
    # What HELLO holds (h) and costs (c), measured with the world's key.
    first = post(world, world.key)
    cost = settled(world, first).cost
    hold = Reservation.objects.get(generation_id=first.json()["id"]).amount
    limit = money(hold + cost / 2)  # room for one hold, not for a hold after a charge
    parent = world.key_for(scope=KeyScope.MANAGE, limit=limit, limit_reset="daily")
    children = [
        key_client(parent).post("/api/v1/keys", {"name": name}, format="json").json()["key"]
        for name in ("a", "b")
    ]  # each takes its parent's limit: together they had twice it
    assert {ApiKey.objects.get(prefix=c[:16]).limit for c in children} == {limit}
    lookups = key_lookup_count()

    spent = settled(world, post(world, children[0])).cost  # the parent's window: c of h + c/2
    refused = post(world, children[1])

    assert key_lookup_count() - lookups == 2  # one statement per key, ancestors included
    error = refused.json()["error"]
    assert refused.status_code == 403 and error["type"] == "key_limit_reached", refused.text
    assert parent[:16] in error["message"] and parent not in refused.text
    assert error["metadata"]["limited_by"].startswith(parent[:16])
    total = UsageRecord.objects.filter(key__prefix__in=[c[:16] for c in children])
    assert sum(r.cost for r in total) == spent <= limit and spent == cost


def test_a_key_whose_limit_never_resets_spends_it_all_over_http(world: World) -> None:
    """Its window is released at each settlement (``billing.key_windows``): before, each hold
    stayed in it and the key was refused at its second request, having spent a fraction."""
    first = post(world, world.key)
    cost = settled(world, first).cost
    hold = Reservation.objects.get(generation_id=first.json()["id"]).amount
    assert hold > 2 * cost  # a hold well beyond what the request costs
    key = world.key_for(limit=money(hold + 2 * cost), limit_reset=None)

    spent = [settled(world, post(world, key)).cost for _ in range(3)]  # the last: c + c + h
    refused = post(world, key)

    assert refused.status_code == 403 and refused.json()["error"]["type"] == "key_limit_reached"
    window = KeySpendWindow.objects.get(key__prefix=key[:16])
    assert (window.spent, window.reserved) == (sum(spent), 0)
    remaining = key_client(key).get("/api/v1/key").json()["limit_remaining"]
    assert money(remaining) == money(hold + 2 * cost) - sum(spent)
