"""OpenRouter's conventions against ``/api/v1``: inference paths, model listings, the key and
credits envelopes, model variants, ``provider.sort`` objects, ``reasoning``, fallbacks from an
unknown model and ``native_finish_reason``. Clients are the openai SDK and plain HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from routing.fake_upstream.answers import answer_text
from tests.routing.world import World, base_catalog, endpoint, model


def openrouter_client(world: World) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{world.gateway_url}/api/v1", api_key=world.key, max_retries=0)


def get(world: World, path: str, key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key or world.key}"}
    return httpx.get(f"{world.gateway_url}/api/v1{path}", headers=headers, timeout=10)


def post_chat(world: World, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{world.gateway_url}/api/v1/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {world.key}"})  # fmt: skip


def test_chat_whole_and_streamed_on_the_openrouter_base_url(world: World) -> None:
    client = openrouter_client(world)
    answer = client.chat.completions.create(
        model="test/gpt", messages=[{"role": "user", "content": "Hi"}]
    )
    stream = client.chat.completions.create(
        model="test/claude", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)

    assert answer.choices[0].message.content == answer_text("gpt-4o-mini", "Hi")
    assert answer.choices[0].model_extra["native_finish_reason"] == "stop"
    assert text == answer_text("claude-sonnet-4-5", "Hi")


def test_completions_embeddings_and_responses_on_the_openrouter_base_url(world: World) -> None:
    client = openrouter_client(world)

    assert client.completions.create(model="test/gpt", prompt="Say hi").choices[0].text
    assert client.responses.create(model="test/gpt", input="Hi", store=False).output_text
    response = httpx.post(f"{world.gateway_url}/api/v1/embeddings", timeout=10,
                          json={"model": "test/nothing", "input": "x"},
                          headers={"authorization": f"Bearer {world.key}"})  # fmt: skip
    assert response.status_code == 404 and "Unknown model" in response.text  # the /v1 handler


def test_models_list_in_openrouters_shape(world: World) -> None:
    response = get(world, "/models")

    assert response.status_code == 200
    models = {m["id"]: m for m in response.json()["data"]}
    gpt = models["test/gpt"]
    assert gpt["pricing"]["prompt"] == "0.000001" and gpt["pricing"]["completion"] == "0.000002"
    assert gpt["architecture"]["output_modalities"] == ["text"]
    assert gpt["top_provider"]["context_length"] == gpt["context_length"]
    assert "reasoning" in gpt["supported_parameters"]
    assert models["test/claude"]["pricing"]["input_cache_read"] == "0.0000003"


def test_a_models_endpoints_in_openrouters_shape(world: World) -> None:
    response = get(world, "/models/test/claude/endpoints")

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["id"] == "test/claude"
    (only,) = data["endpoints"]
    assert only["tag"] == "fake-anthropic" and only["pricing"]["completion"] == "0.000015"
    assert only["status"] == 0 and only["context_length"] > 0
    assert get(world, "/models/test/nothing/endpoints").status_code == 404


def test_key_credits_and_generation_carry_openrouters_envelope(world: World) -> None:
    answer = openrouter_client(world).chat.completions.create(
        model="test/gpt", messages=[{"role": "user", "content": "Hi"}]
    )
    record = world.usage_record(answer.id)
    manage = world.key_for(scope="manage")

    auth = get(world, "/auth/key").json()
    assert set(auth) == {"data"}
    assert auth["data"]["limit"] is None and auth["data"]["is_free_tier"] is True
    assert auth["data"]["usage"] == pytest.approx(float(record.cost))
    assert auth["data"]["rate_limit"] == {"requests": -1, "interval": "1m"}
    key = get(world, "/key").json()
    assert key["data"] == auth["data"] and key["scope"] == "inference"  # API.md's fields stay
    credits = get(world, "/credits", key=manage).json()
    assert credits["data"]["total_credits"] - credits["data"]["total_usage"] == pytest.approx(
        float(credits["balance"])
    )
    generation = get(world, f"/generation?id={answer.id}").json()
    assert generation["id"] == answer.id and generation["data"]["id"] == answer.id
    assert generation["data"]["total_cost"] == pytest.approx(float(record.cost))


def test_floor_and_nitro_variants_serve_the_base_model(world: World) -> None:
    for variant in ("test/gpt:floor", "test/gpt:nitro"):
        response = post_chat(
            world, {"model": variant, "messages": [{"role": "user", "content": "x"}]}
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"] == "test/gpt"


def test_floor_sorts_the_endpoints_by_price(world: World) -> None:
    catalog = base_catalog(world.fake_url)
    catalog["endpoints"].append(endpoint("test/gpt", "fake-openai-b", "gpt-cheap", "0.1", "0.1"))
    world.catalog(catalog)

    response = post_chat(world, {"model": "test/gpt:floor", "messages": [{"role": "user", "content": "x"}],
                                 "provider": {"sort": "latency"}})  # fmt: skip
    floor = post_chat(
        world, {"model": "test/gpt:floor", "messages": [{"role": "user", "content": "x"}]}
    )

    assert response.status_code == 200 and floor.json()["provider"] == "fake-openai-b"


def test_free_variant_keeps_only_endpoints_priced_zero(world: World) -> None:
    body = {"model": "test/gpt:free", "messages": [{"role": "user", "content": "x"}]}
    refused = post_chat(world, body)
    catalog = base_catalog(world.fake_url)
    catalog["endpoints"].append(endpoint("test/gpt", "fake-openai-b", "gpt-free", "0", "0"))
    world.catalog(catalog)
    served = post_chat(world, body)

    assert refused.status_code == 400 and refused.json()["error"]["param"] == "provider"
    assert served.status_code == 200 and served.json()["provider"] == "fake-openai-b"


@pytest.mark.parametrize(
    ("model_id", "words"),
    [("test/gpt:online", "web search"), ("test/gpt:turbo", "Unknown model variant"),
     ("test/gpt:floor", "provider must be an object")],
)  # fmt: skip
def test_online_and_unknown_variants_are_refused(world: World, model_id: str, words: str) -> None:
    response = post_chat(world, {"model": model_id, "provider": "cheap" if "floor" in model_id else {},
                                 "messages": [{"role": "user", "content": "x"}]})  # fmt: skip

    assert response.status_code == 400 and words in response.json()["error"]["message"]
    assert not world.upstream_requests()


def test_a_catalog_id_with_a_colon_is_taken_as_it_is(world: World) -> None:
    catalog = base_catalog(world.fake_url)
    catalog["models"].append(model("test/gpt:free"))
    catalog["endpoints"].append(endpoint("test/gpt:free", "fake-openai", "gpt-4o-mini", "0", "0"))
    world.catalog(catalog)

    response = post_chat(
        world, {"model": "test/gpt:free", "messages": [{"role": "user", "content": "x"}]}
    )

    assert response.status_code == 200 and response.json()["model"] == "test/gpt:free"


def test_thinking_variant_and_reasoning_turn_on_anthropic_thinking(world: World) -> None:
    body = {"model": "test/claude:thinking", "max_tokens": 4000,
            "messages": [{"role": "user", "content": "Think"}]}  # fmt: skip
    answer = post_chat(world, body).json()

    sent = world.last_upstream("/v1/messages")["body"]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2000}  # medium: half
    assert answer["choices"][0]["message"]["reasoning"]
    assert answer["choices"][0]["native_finish_reason"] == "end_turn"
    excluded = post_chat(world, body | {"model": "test/claude",
                                        "reasoning": {"effort": "high", "exclude": True}}).json()  # fmt: skip
    assert world.last_upstream("/v1/messages")["body"]["thinking"]["budget_tokens"] == 3200
    assert "reasoning" not in excluded["choices"][0]["message"]


def test_excluded_thinking_is_sent_neither_whole_nor_streamed(world: World) -> None:
    """``reasoning.exclude``: a whole answer's ``reasoning_details`` carry the thinking's
    signature only, as a stream's do, never its text. Before, a whole answer dropped
    ``reasoning`` but sent the thinking in ``reasoning_details``."""
    body: dict[str, Any] = {
        "model": "test/claude", "max_tokens": 4000,
        "messages": [{"role": "user", "content": "Think it over"}],
        "extra_body": {"reasoning": {"max_tokens": 2000, "exclude": True}},
    }  # fmt: skip
    client = openrouter_client(world)

    whole = client.chat.completions.create(**body)
    with client.chat.completions.create(**body, stream=True) as stream:
        chunks = list(stream)

    thought = "The user asks: Think it over"  # the fake's thinking
    sent = whole.model_dump_json() + "".join(chunk.model_dump_json() for chunk in chunks)
    assert thought not in sent
    streamed = [detail for chunk in chunks for choice in chunk.choices
                for detail in (choice.delta.model_extra or {}).get("reasoning_details") or []]  # fmt: skip
    details = (whole.choices[0].message.model_extra or {})["reasoning_details"]
    assert details == streamed and set(details[0]) == {"type", "signature"}
    assert details[0]["signature"]


def test_reasoning_becomes_openai_effort_and_gemini_thinking_budget(world: World) -> None:
    messages = [{"role": "user", "content": "x"}]
    post_chat(world, {"model": "test/gpt", "messages": messages, "reasoning": {"effort": "low"}})
    assert world.last_upstream("/v1/chat/completions")["body"]["reasoning_effort"] == "low"
    post_chat(world, {"model": "test/gpt", "messages": messages, "reasoning": {"effort": "low"},
                      "reasoning_effort": "high"})  # fmt: skip
    assert world.last_upstream("/v1/chat/completions")["body"]["reasoning_effort"] == "high"
    post_chat(world, {"model": "test/gemini", "messages": messages, "max_tokens": 3000,
                      "reasoning": {"max_tokens": 1500}})  # fmt: skip
    config = world.last_upstream("gemini")["body"]["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingBudget": 1500, "includeThoughts": True}


@pytest.mark.parametrize(
    ("reasoning", "param"),
    [("high", "reasoning"), ({"effort": "max"}, "reasoning.effort"),
     ({"max_tokens": 0}, "reasoning.max_tokens"), ({"exclude": "yes"}, "reasoning.exclude")],
)  # fmt: skip
def test_bad_reasoning_is_a_400_naming_the_field(world: World, reasoning: Any, param: str) -> None:
    response = post_chat(world, {"model": "test/gpt", "reasoning": reasoning,
                                 "messages": [{"role": "user", "content": "x"}]})  # fmt: skip

    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_provider_sort_object_with_partition_none_sorts_across_models(world: World) -> None:
    body = {"model": "test/claude", "models": ["test/gpt"],
            "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    by_model = post_chat(
        world, body | {"provider": {"sort": {"by": "price", "partition": "model"}}}
    )
    across = post_chat(world, body | {"provider": {"sort": {"by": "price", "partition": "none"}}})
    bad = post_chat(world, body | {"provider": {"sort": {"by": "price", "partition": "x"}}})

    assert by_model.json()["model"] == "test/claude"
    assert across.json()["model"] == "test/gpt"  # 1+2 per 1M beats 3+15
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "provider.sort"


def test_an_unknown_primary_model_falls_back_to_the_models_list(world: World) -> None:
    body = {"model": "nobody/unknown", "models": ["test/gpt"],
            "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    served = post_chat(world, body)
    unknown = post_chat(world, body | {"models": ["nobody/other"]})

    assert served.status_code == 200 and served.json()["model"] == "test/gpt"
    assert unknown.status_code == 404 and "nobody/unknown" in unknown.json()["error"]["message"]


def test_native_finish_reason_in_a_stream(world: World) -> None:
    stream = openrouter_client(world).chat.completions.create(
        model="test/gemini", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    finishes = [c.choices[0].model_extra.get("native_finish_reason") for c in stream if c.choices
                and c.choices[0].finish_reason]  # fmt: skip

    assert finishes == ["STOP"]


def test_openrouter_paths_need_the_right_method(world: World) -> None:
    response = httpx.get(f"{world.gateway_url}/api/v1/chat/completions", timeout=10,
                         headers={"authorization": f"Bearer {world.key}"})  # fmt: skip

    assert response.status_code == 405 and response.headers["allow"] == "POST"


def test_rate_limit_headers_on_answers_and_429s(world: World) -> None:
    limited = world.key_for(rpm=1, tpm=100_000)
    body = {"model": "test/gpt", "messages": [{"role": "user", "content": "x"}]}
    headers = {"authorization": f"Bearer {limited}"}
    url = f"{world.gateway_url}/api/v1/chat/completions"
    served = httpx.post(url, json=body, headers=headers, timeout=10)
    # Three at 1 rpm: one is refused even when a minute's window ends between two of them.
    tries = [httpx.post(url, json=body, headers=headers, timeout=10) for _ in range(2)]
    refused = next(r for r in tries if r.status_code == 429)
    unlimited = post_chat(world, body)

    assert served.headers["x-ratelimit-limit-requests"] == "1"
    assert served.headers["x-ratelimit-limit-tokens"] == "100000"
    assert served.headers["x-ratelimit-reset-requests"].endswith("s")
    assert int(served.headers["x-ratelimit-reset"]) % 60_000 == 0
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-limit" not in unlimited.headers


def test_provider_order_without_fallbacks_that_names_no_endpoint_is_a_400(world: World) -> None:
    client = openrouter_client(world)
    strict = {"order": ["openai", "anthropic"], "allow_fallbacks": False}  # OpenRouter's slugs

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="test/gpt", messages=[{"role": "user", "content": "x"}],
                                       extra_body={"provider": strict})  # fmt: skip
    served = client.chat.completions.create(
        model="test/gpt", messages=[{"role": "user", "content": "x"}],
        extra_body={"provider": strict | {"order": ["fake-openai"]}},
    )  # fmt: skip

    # It was a 503 "no enabled endpoint" with x-should-retry: false: the request's own fault.
    assert refused.value.body["param"] == "provider"  # type: ignore[index]
    assert "provider.order" in refused.value.message
    assert served.model_extra["provider"] == "fake-openai"
    assert len(world.upstream_requests()) == 1


@pytest.mark.parametrize(
    ("preferences", "param"),
    [({"data_collection": "deny"}, "provider.data_collection"), ({"zdr": True}, "provider.zdr"),
     ({"quantizations": ["fp8"]}, "provider.quantizations"),
     ({"max_price": {"prompt": 5, "request": 0.01}}, "provider.max_price.request")],
)  # fmt: skip
def test_provider_filters_without_catalog_facts_are_a_400(
    world: World, preferences: dict[str, Any], param: str
) -> None:
    client = openrouter_client(world)
    allowed = {"data_collection": "allow", "zdr": False, "quantizations": []}

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="test/gpt", messages=[{"role": "user", "content": "x"}],
                                       extra_body={"provider": preferences})  # fmt: skip
    served = client.chat.completions.create(model="test/gpt", messages=[{"role": "user", "content": "x"}],
                                            extra_body={"provider": allowed})  # fmt: skip

    # They were dropped in silence: the prompt went to a provider the client had excluded.
    assert refused.value.body["param"] == param  # type: ignore[index]
    assert served.model == "test/gpt" and len(world.upstream_requests()) == 1


def test_openrouter_auto_is_the_platform_router_and_bare_names_find_their_model(
    world: World,
) -> None:
    catalog = base_catalog(world.fake_url)
    catalog["models"].append(model("other/gpt"))
    catalog["endpoints"].append(endpoint("other/gpt", "fake-openai-b", "gpt-4o-mini"))
    world.catalog(catalog)
    client = openrouter_client(world)
    hi = [{"role": "user", "content": "Hi"}]

    auto = client.chat.completions.create(model="openrouter/auto", messages=hi, extra_body={
        "router": {"candidates": ["test/claude", "test/gemini"]}})  # fmt: skip
    bare = client.chat.completions.create(model="claude", messages=hi)
    variant = client.chat.completions.create(model="gemini:floor", messages=hi)
    with pytest.raises(openai.NotFoundError) as ambiguous:
        client.chat.completions.create(model="gpt", messages=hi)

    # Both were refused: an unknown model (openrouter/auto with router options a 400).
    assert auto.model_extra["routing"]["router"] == "router/auto"
    assert auto.model in ("test/claude", "test/gemini")
    assert bare.model == "test/claude" and world.usage_record(bare.id).model == "test/claude"
    assert variant.model == "test/gemini"
    assert "other/gpt, test/gpt" in ambiguous.value.message


def test_models_filtered_by_supported_parameters(world: World) -> None:
    catalog = base_catalog(world.fake_url)
    catalog["models"][0] = model("test/gpt", capabilities=["json", "streaming"])  # no tools
    world.catalog(catalog)

    with_tools = get(world, "/models?supported_parameters=tools").json()["data"]
    both = get(world, "/models?supported_parameters=tools,response_format").json()["data"]
    everything = get(world, "/models").json()["data"]

    # The filter was ignored: a client choosing a model for tool calls got one without tools.
    assert "test/gpt" not in {m["id"] for m in with_tools}
    assert (
        {m["id"] for m in both}
        == {m["id"] for m in with_tools}
        == {m["id"] for m in everything if "tools" in m["supported_parameters"]}
    )
    assert len(everything) == 4


def test_provider_preferences_name_providers_by_slug_or_name_in_any_case(world: World) -> None:
    catalog = base_catalog(world.fake_url)
    catalog["providers"][3]["name"] = "Budget Host"  # fake-openai-b
    catalog["endpoints"].append(endpoint("test/gpt", "fake-openai-b", "gpt-4o-mini", "5", "5"))
    world.catalog(catalog)
    client = openrouter_client(world)

    def served_by(preferences: dict[str, Any]) -> Any:
        return client.chat.completions.create(
            model="test/gpt", messages=[{"role": "user", "content": "x"}],
            extra_body={"provider": preferences},
        ).model_extra["provider"]  # fmt: skip

    # Only exact slugs matched: "Budget Host" and "FAKE-OPENAI" named nothing (order and ignore
    # were no-ops, only a 400).
    assert served_by({"only": ["Budget Host"]}) == "fake-openai-b"
    assert served_by({"order": ["budget host"], "allow_fallbacks": False}) == "fake-openai-b"
    assert served_by({"ignore": ["FAKE-OPENAI"]}) == "fake-openai-b"
    assert served_by({}) == "fake-openai"  # the cheaper one, when nothing is preferred


def test_an_ambiguous_bare_name_falls_back_like_an_unknown_one_and_a_colon_id_is_found_whole(
    world: World,
) -> None:
    catalog = base_catalog(world.fake_url)
    catalog["models"] += [model("other/gpt"), model("deepseek/r1:free")]
    catalog["endpoints"] += [endpoint("other/gpt", "fake-openai-b", "gpt-4o-mini"),
                             endpoint("deepseek/r1:free", "fake-openai", "gpt-4o-mini", "0", "0")]  # fmt: skip
    world.catalog(catalog)
    hi = [{"role": "user", "content": "Hi"}]

    fallback = post_chat(world, {"model": "gpt", "models": ["test/claude"], "messages": hi})
    in_models = post_chat(world, {"model": "test/claude", "models": ["gpt"], "messages": hi})
    alone = post_chat(world, {"model": "gpt", "models": ["unknown-x"], "messages": hi})
    colon = post_chat(world, {"model": "r1:free", "messages": hi})

    # "gpt" (other/gpt, test/gpt) was a 404 before `models` was read, where "unknown-x" fell
    # back; "r1:free" was read as "r1" with the :free variant, a 404.
    assert fallback.status_code == 200 and fallback.json()["model"] == "test/claude"
    assert in_models.status_code == 200 and in_models.json()["model"] == "test/claude"
    assert alone.status_code == 404
    assert "may be any of other/gpt, test/gpt" in alone.json()["error"]["message"]
    assert colon.status_code == 200 and colon.json()["model"] == "deepseek/r1:free"


def test_provider_preferences_prefer_a_slug_and_read_non_latin_names(world: World) -> None:
    catalog = base_catalog(world.fake_url)
    catalog["providers"][0]["name"] = "東京ホスト"  # fake-openai, the cheaper one
    catalog["providers"][3]["name"] = "大阪ホスト"  # fake-openai-b
    catalog["endpoints"].append(endpoint("test/gpt", "fake-openai-b", "gpt-4o-mini", "5", "5"))
    world.catalog(catalog)

    def served_by(preferences: dict[str, Any]) -> Any:
        response = post_chat(world, {"model": "test/gpt", "provider": preferences,
                                     "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()["provider"]

    # Both names slugified to "": naming one selected every such provider (the cheaper served).
    assert served_by({"only": ["大阪ホスト"]}) == "fake-openai-b"
    assert served_by({"order": ["大阪ホスト"], "allow_fallbacks": False}) == "fake-openai-b"
    assert served_by({"ignore": ["東京ホスト"]}) == "fake-openai-b"
    nothing = post_chat(world, {"model": "test/gpt", "provider": {"only": ["!!"]},
                                "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
    assert nothing.status_code == 400  # a name with nothing left names no provider
    catalog["providers"][0]["name"] = "fake-openai-b"  # fake-openai named as the other's slug
    world.catalog(catalog)
    assert served_by({"only": ["fake-openai-b"]}) == "fake-openai-b"  # the slug, not the name


def test_models_filtered_by_category(world: World) -> None:
    catalog = base_catalog(world.fake_url)
    catalog["models"][0]["categories"] = ["programming", "science"]  # test/gpt
    catalog["models"][2]["categories"] = ["programming"]  # test/gemini
    catalog["models"][3]["categories"] = ["translation"]  # test/gemini-pro
    world.catalog(catalog)
    client = openrouter_client(world)

    programming = client.models.list(extra_query={"category": "programming"})
    coding_tools = get(world, "/models?category=Programming&supported_parameters=tools").json()
    legal = get(world, "/models?category=legal").json()["data"]
    unknown = get(world, "/models?category=cooking")
    everything = get(world, "/models?category=").json()["data"]

    # The category was ignored: every model came back for every category.
    assert sorted(m.id for m in programming.data) == ["test/gemini", "test/gpt"]
    assert sorted(m["id"] for m in coding_tools["data"]) == ["test/gemini", "test/gpt"]
    assert legal == []
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "category"
    assert "programming" in unknown.json()["error"]["message"]
    assert len(everything) == 4


def test_an_unknown_category_in_the_catalog_file_is_refused_at_sync() -> None:
    from routing.services import _categories

    with pytest.raises(ValueError, match="coding"):
        _categories("test/gpt", ["programming", "coding"])


def test_the_shipped_catalog_gives_every_category_it_names_a_known_name() -> None:
    import tomllib

    from routing.models import MODEL_CATEGORIES
    from routing.services import CATALOG_FILE

    models = tomllib.loads(CATALOG_FILE.read_text())["models"]
    named = {c for m in models for c in m.get("categories", [])}

    assert named and named <= set(MODEL_CATEGORIES)
    assert (
        "programming" in next(m for m in models if m["id"] == "mistralai/codestral")["categories"]
    )


def test_a_router_with_a_models_list_ranks_only_those_models(world: World) -> None:
    client = openrouter_client(world)
    hi = [{"role": "user", "content": "Hi"}]
    given = ["test/claude", "test/gemini-pro"]

    answers = [
        client.chat.completions.create(model=name, messages=hi, extra_body={"models": given})
        for name in ("router/auto", "openrouter/auto")
    ]
    both = post_chat(world, {"model": "router/auto", "messages": hi, "models": given,
                             "router": {"candidates": ["test/gpt"]}})  # fmt: skip
    unknown_only = post_chat(world, {"model": "router/auto", "messages": hi,
                                     "models": ["nope/model"]})  # fmt: skip

    # The router ranked the whole catalog (the cheapest, test/gpt or test/gemini, was served)
    # and the given models were only fallbacks after its ranking.
    for answer in answers:
        assert answer.model == "test/gemini-pro"  # the cheaper of the two given
        ranked = [c["model"] for c in answer.model_extra["routing"]["ranked"]]
        assert sorted(ranked) == sorted(given)
    assert both.status_code == 400 and both.json()["error"]["param"] == "models"
    assert unknown_only.status_code == 404
