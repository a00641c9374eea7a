"""OpenAI parameters that change what the provider bills or keeps: ``service_tier`` (Flex and
Priority processing, priced off the catalog), ``store``/``metadata`` (stored completions),
``prediction`` (rejected predicted tokens billed as completion tokens) and a host's built-in
tools. On the platform's keys each is refused, dropped or held for; on an organization's own key
(BYOK) it is the organization's choice and goes as sent. The openai SDK against the fake upstream,
which answers the tier served and counts rejected prediction tokens as OpenAI does."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from billing.models import Reservation
from routing.fake_upstream.answers import split_tokens
from routing.models import Provider
from routing.services import provider_key_create
from tests.routing.world import World, base_catalog, endpoint, model

HI = [{"role": "user", "content": "Hi"}]


def post(world: World, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {world.key}"})  # fmt: skip


def own_openai_key(world: World) -> None:
    provider = Provider.objects.get(slug="fake-openai")
    provider_key_create(
        organization=world.organization, provider=provider, secret="sk-own-key-7777"
    )


@pytest.mark.parametrize("tier", ["priority", "flex", "scale"])
def test_a_tier_the_catalog_does_not_price_is_a_400_on_platform_keys(
    world: World, tier: str
) -> None:
    """Before, "priority" went to OpenAI (≈2x its price) and was billed the standard price."""
    with pytest.raises(openai.BadRequestError) as caught:
        world.openai_client().chat.completions.create(model="test/gpt", messages=HI,
                                                  service_tier=tier)  # type: ignore[arg-type]  # fmt: skip

    error = caught.value.response.json()["error"]
    assert caught.value.status_code == 400 and error["param"] == "service_tier"
    assert f"service_tier '{tier}'" in error["message"] and "own provider key" in error["message"]
    assert not world.upstream_requests("/chat/completions")


@pytest.mark.parametrize("tier", ["auto", "default", "on_demand"])
def test_the_standard_tiers_are_sent_and_billed_at_list_price(world: World, tier: str) -> None:
    """Groq's standard tier is ``on_demand`` (Groq is a platform provider): a 400 before."""
    answer = world.openai_client().chat.completions.create(
        model="test/gpt",
        messages=HI,
        service_tier=tier,  # type: ignore[arg-type]
    )

    assert world.last_upstream("/chat/completions")["body"]["service_tier"] == tier
    usage = answer.usage
    assert usage is not None
    record = world.usage_record(answer.id)
    assert record.cost == Decimal(usage.prompt_tokens + 2 * usage.completion_tokens) / 10**6


def test_an_organizations_own_key_sends_any_tier_and_retention_parameters(world: World) -> None:
    own_openai_key(world)

    answer = world.openai_client().chat.completions.create(
        model="test/gpt", messages=HI, service_tier="priority", store=True, metadata={"app": "x"}
    )

    sent = world.last_upstream("/chat/completions")
    assert sent["headers"]["authorization"] == "***7777"
    assert (sent["body"]["service_tier"], sent["body"]["store"]) == ("priority", True)
    assert sent["body"]["metadata"] == {"app": "x"}
    assert world.usage_record(answer.id).is_byok


def test_an_own_key_beside_a_platform_endpoint_serves_the_tier_alone(world: World) -> None:
    """The platform's (OpenAI-style) endpoint of another model is left out, not refused: the own
    key serves."""
    catalog = base_catalog(world.fake_url)
    catalog["models"].append(model("test/llama"))
    catalog["endpoints"].append(endpoint("test/llama", "fake-openai-b", "llama-3.3-70b"))
    world.catalog(catalog)
    own_openai_key(world)

    answer = post(world, {"model": "test/llama", "models": ["test/gpt"], "messages": HI,
                          "service_tier": "flex"})  # fmt: skip

    assert answer.status_code == 200, answer.text
    assert answer.json()["provider"] == "fake-openai"
    assert world.last_upstream("/chat/completions")["body"]["service_tier"] == "flex"


@pytest.mark.parametrize("stream", [False, True])
def test_store_and_metadata_are_not_sent_on_platform_keys(world: World, stream: bool) -> None:
    """Before, the platform's OpenAI account kept the tenant's prompts (stored completions); then
    they were left out in silence: now ``x-routerhub-dropped`` names them."""
    raw = world.openai_client().chat.completions.with_raw_response.create(
        model="test/gpt", messages=HI, store=True, metadata={"customer": "acme"}, stream=stream
    )
    if stream:
        list(raw.parse())  # type: ignore[call-overload]

    sent = world.last_upstream("/chat/completions")["body"]
    assert "store" not in sent and "metadata" not in sent
    assert sent["messages"] == HI
    assert raw.headers["x-routerhub-dropped"] == "store, metadata"


def test_own_keys_are_sent_store_and_metadata_and_say_nothing_dropped(world: World) -> None:
    own_openai_key(world)

    raw = world.openai_client().chat.completions.with_raw_response.create(
        model="test/gpt", messages=HI, store=False, metadata={"customer": "acme"}
    )

    assert world.last_upstream("/chat/completions")["body"]["metadata"] == {"customer": "acme"}
    assert "x-routerhub-dropped" not in raw.headers
    plain = world.openai_client().chat.completions.with_raw_response.create(
        model="test/claude", messages=HI, store=False
    )
    assert (
        "x-routerhub-dropped" not in plain.headers
    )  # store: false asks for what not sending gives


@pytest.mark.parametrize("model", ["test/claude", "test/gemini"])
def test_a_tier_is_not_sent_to_anthropic_or_gemini_and_said_dropped(
    world: World, model: str
) -> None:
    """Their adapters never send ``service_tier``: nothing to refuse, so no 400 as before; the
    answer names it (and ``store``/``metadata``, which they never send either) as dropped."""
    raw = world.openai_client().chat.completions.with_raw_response.create(
        model=model, messages=HI, service_tier="priority", metadata={"a": "b"}
    )

    assert raw.parse().model == model
    sent = world.upstream_requests()[-1]["body"]
    assert "service_tier" not in str(sent) and "metadata" not in sent
    assert raw.headers["x-routerhub-dropped"] == "service_tier, metadata"


def test_a_prediction_is_held_for_and_its_rejected_tokens_billed(world: World) -> None:
    """OpenAI bills rejected prediction tokens as completion tokens, beside max_tokens' answer:
    the hold covers them. Before, the hold was max_tokens' alone and the charge exceeded it."""
    predicted = "def add(a, b):\n    return a + b\n" * 40
    answer = world.openai_client().chat.completions.create(
        model="test/gpt",
        messages=HI,
        max_tokens=5,
        prediction={"type": "content", "content": predicted},
    )

    usage = answer.usage
    assert usage is not None
    # The fake rejects every predicted token, in completion_tokens as OpenAI counts them.
    assert usage.completion_tokens > len(split_tokens(predicted))
    assert world.last_upstream("/chat/completions")["body"]["prediction"]["content"] == predicted
    record = world.usage_record(answer.id)
    assert record.completion_tokens == usage.completion_tokens  # rejected ones included
    assert record.cost == Decimal(usage.prompt_tokens + 2 * usage.completion_tokens) / 10**6
    hold = Reservation.objects.get(generation_id=answer.id)
    assert hold.amount >= record.cost and "over_hold" not in record.flag_list


@pytest.mark.parametrize("tool", [{"type": "browser_search"}, {"type": "code_interpreter"}])
def test_a_hosts_built_in_tool_is_a_400_on_platform_keys(world: World, tool: dict) -> None:
    """Groq's built-in tools are billed per use by the host; the catalog prices tokens only."""
    answer = post(world, {"model": "test/gpt", "messages": HI, "tools": [tool]})

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "tools"
    assert f"'{tool['type']}' tool" in answer.json()["error"]["message"]
    assert not world.upstream_requests("/chat/completions")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"service_tier": 1}, "service_tier"),
        ({"prediction": "def add"}, "prediction"),
        ({"prediction": {"type": "content", "content": [{"type": "image_url"}]}}, "prediction"),
    ],
)
def test_malformed_tier_or_prediction_is_a_400_naming_it(
    world: World, extra: dict, param: str
) -> None:
    answer = post(world, {"model": "test/gpt", "messages": HI} | extra)

    assert answer.status_code == 400 and answer.json()["error"]["param"] == param
    assert not world.upstream_requests("/chat/completions")


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_served_at_an_unpriced_tier_is_flagged_for_review(
    world: World, stream: bool
) -> None:
    """Billing reads the tier the answer says it was served at: on the platform's keys one the
    catalog does not price (the platform's project set to Priority) is billed the standard price
    and flagged ``unpriced_tier``. Before, nothing read it."""
    catalog = base_catalog(world.fake_url)
    catalog["endpoints"][0]["upstream_model"] = "gpt-4o-mini@tier=priority"
    world.catalog(catalog)
    body: dict[str, Any] = {"model": "test/gpt", "messages": HI, "stream": stream}

    answer = post(world, body)

    assert answer.status_code == 200, answer.text
    record = world.usage_record(answer.headers["x-generation-id"])
    assert record.flag_list == ["unpriced_tier"]
    assert record.cost == Decimal(record.prompt_tokens + 2 * record.completion_tokens) / 10**6


def test_an_own_keys_answer_at_any_tier_is_not_flagged(world: World) -> None:
    catalog = base_catalog(world.fake_url)
    catalog["endpoints"][0]["upstream_model"] = "gpt-4o-mini@tier=priority"
    world.catalog(catalog)
    own_openai_key(world)

    answer = post(world, {"model": "test/gpt", "messages": HI})

    assert answer.status_code == 200, answer.text
    record = world.usage_record(answer.headers["x-generation-id"])
    assert record.is_byok and record.flag_list == []
