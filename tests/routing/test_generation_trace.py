"""What a usage record keeps for the generation page, and the measurements built from it."""

from __future__ import annotations

import httpx
from django.core.cache import cache

from accounts.models import ApiKey
from billing.key_spend import key_spend
from routing.model_stats import provider_stats
from tests.routing.test_gateway_faults import flaky_catalog
from tests.routing.world import World

HELLO = {"model": "test/gpt", "messages": [{"role": "user", "content": "hello"}]}


def post(world: World, body: dict) -> httpx.Response:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {world.key}"}
    return httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body, headers=headers)


def test_fallbacks_tried_are_kept_and_count_against_the_provider_uptime(world: World) -> None:
    flaky_catalog(world, "gpt@status=503")

    completion = world.openai_client().chat.completions.create(
        model="test/flaky", messages=[{"role": "user", "content": "hi"}]
    )

    record = world.usage_record(completion.id)
    fallbacks = record.trace_data["fallbacks"]
    assert [(f["provider"], f["error"]) for f in fallbacks] == [("failing", "status_503")]
    assert record.trace_data["routing"] is None
    cache.clear()
    stats = {(s.model, s.provider): s for s in provider_stats()}
    assert stats[("test/flaky", "failing")].uptime_percent == 0.0
    served = stats[("test/flaky", "fake-anthropic")]
    assert served.uptime_percent == 100.0 and served.requests == 1
    assert served.latency_ms is not None


def test_a_request_without_router_or_fallback_keeps_no_trace(world: World) -> None:
    generation = post(world, HELLO).json()["id"]

    assert world.usage_record(generation).trace == ""


def test_the_answer_is_kept_only_with_prompt_logging(world: World) -> None:
    quiet = post(world, HELLO).json()["id"]
    world.organization.prompt_logging = True
    world.organization.save()
    from accounts.keys import key_cache_clear

    key_cache_clear()
    whole = post(world, HELLO).json()
    with httpx.stream(
        "POST",
        f"{world.gateway_url}/v1/chat/completions",
        json=HELLO | {"stream": True},
        headers={"Authorization": f"Bearer {world.key}"},
    ) as streamed:
        lines = [line for line in streamed.iter_lines() if line.startswith("data: {")]
    stream_id = httpx.Response(200, content=lines[0][6:]).json()["id"]

    assert world.usage_record(quiet).response == ""
    assert world.usage_record(whole["id"]).response == whole["choices"][0]["message"]["content"]
    assert world.usage_record(whole["id"]).prompt
    assert world.usage_record(stream_id).response


def test_key_spend_sums_each_keys_usage(world: World) -> None:
    first = post(world, HELLO).json()["id"]
    second = post(world, HELLO).json()["id"]
    records = [world.usage_record(first), world.usage_record(second)]

    key = ApiKey.objects.get(organization=world.organization)
    spend = key_spend(organization_id=world.organization.pk, key_ids=[key.pk])

    assert spend[key.pk].requests == 2
    assert spend[key.pk].total == spend[key.pk].recent == sum(r.cost for r in records)
