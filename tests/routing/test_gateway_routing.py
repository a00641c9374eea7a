"""Provider preferences, capability filtering and the model list."""

from __future__ import annotations

import httpx
import openai
import pytest

from routing.gateway import health
from tests.routing.world import World, endpoint, model

HELLO = [{"role": "user", "content": "hello"}]
TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


def three_way(world: World, capabilities: list[str] | None = None) -> None:
    """``test/multi`` served by three providers: cheap OpenAI-style, mid Gemini, dear Anthropic."""
    world.catalog({"models": [model("test/multi")], "endpoints": [
        endpoint("test/multi", "fake-openai", "gpt-4o-mini", "0.1", "0.4", **({"capabilities": capabilities} if capabilities is not None else {})),
        endpoint("test/multi", "fake-gemini", "gemini-2.5-flash", "0.3", "2.5"),
        endpoint("test/multi", "fake-anthropic", "claude-sonnet-4-5", "3", "15"),
    ]})  # fmt: skip


def ask(world: World, **extra: object) -> openai.types.chat.ChatCompletion:
    client = world.openai_client()
    return client.chat.completions.create(
        model="test/multi", messages=HELLO, extra_body=extra or None
    )  # type: ignore[arg-type]


def served_by(completion: openai.types.chat.ChatCompletion) -> str:
    return str(completion.model_extra["provider"])


def test_default_order_is_cheapest_first(world: World) -> None:
    three_way(world)

    assert served_by(ask(world)) == "fake-openai"


def test_provider_order_only_and_ignore_are_honoured(world: World) -> None:
    three_way(world)

    assert (
        served_by(ask(world, provider={"order": ["fake-anthropic", "fake-gemini"]}))
        == "fake-anthropic"
    )
    assert served_by(ask(world, provider={"only": ["fake-gemini"]})) == "fake-gemini"
    assert served_by(ask(world, provider={"ignore": ["fake-openai"]})) == "fake-gemini"


def test_max_price_excludes_dear_endpoints(world: World) -> None:
    three_way(world)

    served = served_by(
        ask(world, provider={"ignore": ["fake-openai"], "max_price": {"completion": 3}})
    )

    assert served == "fake-gemini"


def test_max_price_below_every_endpoint_is_400_not_retryable(world: World) -> None:
    three_way(world)

    with pytest.raises(openai.APIStatusError) as caught:
        ask(world, provider={"max_price": {"prompt": 0.01}})

    # The request's own preferences exclude every endpoint: sending it again cannot help.
    assert caught.value.status_code == 400
    assert "retry-after" not in caught.value.response.headers


def test_allow_fallbacks_false_tries_only_the_ordered_providers(world: World) -> None:
    world.catalog({"models": [model("test/multi")], "endpoints": [
        endpoint("test/multi", "fake-openai", "gpt@status=500", "0.1", "0.4"),
        endpoint("test/multi", "fake-gemini", "gemini-2.5-flash", "0.3", "2.5")]})  # fmt: skip

    with pytest.raises(openai.APIStatusError) as caught:
        ask(world, provider={"order": ["fake-openai"], "allow_fallbacks": False})

    assert caught.value.status_code == 502
    assert world.upstream_requests(":generateContent") == []


def test_sort_by_latency_prefers_the_endpoint_measured_fastest(world: World) -> None:
    three_way(world)
    world.catalog(
        {
            "endpoints": [
                endpoint("test/multi", "fake-anthropic", "claude-sonnet-4-5@delay=150", "3", "15")
            ]
        }
    )
    for slug in ("fake-openai", "fake-gemini", "fake-anthropic"):
        ask(world, provider={"only": [slug]})

    assert served_by(ask(world, provider={"sort": "latency"})) != "fake-anthropic"
    latencies = {slug: _latency(world, slug) for slug in ("fake-anthropic", "fake-openai")}
    assert latencies["fake-anthropic"] > latencies["fake-openai"]


def _latency(world: World, slug: str) -> float:
    from routing.models import Endpoint

    return health.latency_ms(Endpoint.objects.get(model_id="test/multi", provider__slug=slug).pk)


def test_tools_only_go_to_endpoints_with_tool_support(world: World) -> None:
    three_way(world, capabilities=["streaming"])

    client = world.openai_client()
    completion = client.chat.completions.create(model="test/multi", messages=HELLO, tools=[TOOL])  # type: ignore[list-item]

    assert served_by(completion) == "fake-gemini"


def test_a_request_no_endpoint_can_honour_is_400(world: World) -> None:
    world.catalog({"models": [model("test/plain", capabilities=["streaming"])],
                   "endpoints": [endpoint("test/plain", "fake-openai", "gpt-4o-mini")]})  # fmt: skip
    client = world.openai_client()

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="test/plain", messages=HELLO, tools=[TOOL])  # type: ignore[list-item]

    assert caught.value.response.json()["error"]["param"] == "tools"


def test_require_parameters_skips_endpoints_that_would_drop_one(world: World) -> None:
    three_way(world)
    client = world.openai_client()

    dropped = client.chat.completions.create(model="test/multi", messages=HELLO, logit_bias={"50256": -100},
                                             extra_body={"provider": {"ignore": ["fake-openai"]}})  # fmt: skip
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="test/multi", messages=HELLO, logit_bias={"50256": -100},
                                       extra_body={"provider": {"ignore": ["fake-openai"], "require_parameters": True}})  # fmt: skip

    assert served_by(dropped) == "fake-gemini"
    assert "logit_bias" not in world.last_upstream(":generateContent")["body"]["generationConfig"]
    assert caught.value.response.json()["error"]["param"] == "logit_bias"


def test_models_endpoint_lists_the_catalog_with_pricing(world: World) -> None:
    three_way(world)
    client = world.openai_client()

    listed = {m.id: m for m in client.models.list()}
    raw = httpx.get(f"{world.gateway_url}/v1/models").json()

    multi = listed["test/multi"].model_extra
    assert multi["pricing"] == {"prompt": "0.0000001", "completion": "0.0000004"}
    assert [p["slug"] for p in multi["providers"]] == [
        "fake-openai",
        "fake-gemini",
        "fake-anthropic",
    ]
    assert multi["context_length"] == 128000 and "tools" in multi["supported_parameters"]
    assert raw["object"] == "list" and {"test/gpt", "test/claude", "test/gemini"} <= {
        m["id"] for m in raw["data"]
    }
    one = httpx.get(f"{world.gateway_url}/v1/models/test/claude").json()
    assert one["pricing"]["input_cache_read"] == "0.0000003"
