"""`router/<slug>` end to end: train through the API, then route chat completions with it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import openai
import pytest
from asgiref.sync import async_to_sync
from rest_framework.test import APIClient

from accounts.models import KeyScope
from billing.models import LedgerEntry
from billing.pricing import usage_cost
from routing.gateway.catalog_cache import catalog_cache_clear, catalog_get
from tests.factories import key_client, key_make
from tests.routing.world import World, base_catalog
from tests.training.conftest import csv_bytes, synthetic_frame
from tests.training.helpers import upload

pytestmark = pytest.mark.usefixtures("eager_celery", "media")

CHEAP, DEAR = "test/gpt", "test/claude"  # $1/$2 and $3/$15 per 1M tokens in the test catalog
MATH_PROMPT = "Compute 17 + 42 * 3."
PROSE_PROMPT = "Write a short poem about the lantern at dawn. (#1000)"


def train_router(
    world: World, slug: str = "support", **router: Any
) -> tuple[APIClient, dict[str, Any]]:
    """A router over CHEAP (right on arithmetic) and DEAR (right on writing), trained via the API."""
    manage = key_client(key_make(world.organization, scope=KeyScope.MANAGE))
    frame = synthetic_frame(rows=180).rename(
        columns=lambda c: c.replace("math-model", CHEAP).replace("prose-model", DEAR)
    )
    dataset = upload(manage, csv_bytes(frame), filename="support.csv").json()
    assert manage.get(f"/api/v1/datasets/{dataset['id']}").json()["status"] == "ready"
    created = manage.post(
        "/api/v1/routers",
        {"slug": slug, "name": "Support", "candidates": [CHEAP, DEAR], **router},
        format="json",
    )
    assert created.status_code == 201, created.json()
    run = manage.post(f"/api/v1/routers/{slug}/train", {"dataset": dataset["id"]}, format="json")
    assert run.status_code == 202, run.json()
    finished = manage.get(f"/api/v1/training-runs/{run.json()['id']}").json()
    assert finished["status"] == "succeeded", finished
    return manage, finished


def chat(world: World, prompt: str, **extra: Any) -> Any:
    client = world.openai_client()
    return client.chat.completions.create(
        model="router/support", messages=[{"role": "user", "content": prompt}], **extra
    )


def test_a_trained_router_serves_chat_and_picks_per_prompt(world: World) -> None:
    train_router(world)

    math = chat(world, MATH_PROMPT, extra_body={"router": {"tradeoff": 0}})
    prose = chat(world, PROSE_PROMPT, extra_body={"router": {"tradeoff": 0}})

    assert math.model == CHEAP and prose.model == DEAR
    routing = prose.model_extra["routing"]
    assert routing["router"] == "router/support" and routing["version"] == 1
    assert routing["chosen"] == DEAR
    assert [r["model"] for r in routing["ranked"]] == [DEAR, CHEAP]
    assert all(r["score"] is not None and r["expected_cost"] > 0 for r in routing["ranked"])
    record = world.usage_record(prose.id)
    assert (record.router, record.router_version, record.model) == ("router/support", 1, DEAR)
    assert world.last_upstream("/v1/messages")["body"]["model"] == "claude-sonnet-4-5"


def test_tradeoff_one_prefers_the_cheap_model_where_zero_prefers_quality(world: World) -> None:
    train_router(world)

    quality = chat(world, PROSE_PROMPT, extra_body={"router": {"tradeoff": "quality"}})
    cost = chat(world, PROSE_PROMPT, extra_body={"router": {"tradeoff": 1}})

    assert quality.model == DEAR
    assert cost.model == CHEAP


def test_request_candidates_narrow_the_choice(world: World) -> None:
    train_router(world)

    narrowed = chat(
        world, MATH_PROMPT, extra_body={"router": {"tradeoff": 0, "candidates": [DEAR]}}
    )

    assert narrowed.model == DEAR
    assert [r["model"] for r in narrowed.model_extra["routing"]["ranked"]] == [DEAR]


def test_fallback_walks_down_the_ranking_and_bills_the_model_used(world: World) -> None:
    train_router(world)
    catalog = base_catalog(world.fake_url)
    for endpoint in catalog["endpoints"]:
        if endpoint["model"] == CHEAP:
            endpoint["upstream_model"] = "gpt-4o-mini@status=500"
    world.catalog(catalog)
    catalog_cache_clear()

    completion = chat(world, MATH_PROMPT, extra_body={"router": {"tradeoff": 0}})

    assert completion.model_extra["routing"]["chosen"] == CHEAP
    assert completion.model == DEAR  # the next in the ranking served it
    record = world.usage_record(completion.id)
    assert record.model == DEAR
    prices = async_to_sync(catalog_get)().models[DEAR].endpoints[0].prices
    expected = usage_cost(
        prices,
        prompt_tokens=completion.usage.prompt_tokens,
        completion_tokens=completion.usage.completion_tokens,
        cached_tokens=record.cached_tokens,
    )
    assert record.cost == expected == Decimal(str(completion.usage.model_extra["cost"]))
    charge = LedgerEntry.objects.get(idempotency_key=f"usage:{completion.id}")
    assert charge.amount == -expected


def test_select_ranks_without_calling_an_upstream(world: World) -> None:
    _, run = train_router(world)
    before = len(world.fake.requests)

    inference = key_client(world.key)
    response = inference.post(
        "/api/v1/routers/support/select",
        {"messages": [{"role": "user", "content": MATH_PROMPT}], "tradeoff": 0},
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["chosen"] == CHEAP and body["version"] == run["version"]
    assert {r["model"] for r in body["ranked"]} == {CHEAP, DEAR}
    assert body["latency_ms"] >= 0
    assert len(world.fake.requests) == before


def test_unknown_and_untrained_routers_are_clear_404s(world: World) -> None:
    manage = key_client(key_make(world.organization, scope=KeyScope.MANAGE))
    manage.post(
        "/api/v1/routers",
        {"slug": "fresh", "name": "Fresh", "candidates": [CHEAP, DEAR]},
        format="json",
    )
    client = world.openai_client()

    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(
            model="router/nope", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.NotFoundError) as untrained:
        client.chat.completions.create(
            model="router/fresh", messages=[{"role": "user", "content": "hi"}]
        )

    assert "No router 'router/nope'" in unknown.value.body["message"]
    assert "no trained version yet" in untrained.value.body["message"]


def test_bad_tradeoff_is_a_400_naming_the_parameter(world: World) -> None:
    train_router(world)

    with pytest.raises(openai.BadRequestError) as bad:
        chat(world, MATH_PROMPT, extra_body={"router": {"tradeoff": 3}})

    assert bad.value.body["param"] == "router.tradeoff"
