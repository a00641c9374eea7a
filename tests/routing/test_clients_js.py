"""The JavaScript SDKs against the live gateway and the fake upstream: openai-node,
@anthropic-ai/sdk and the Vercel AI SDK (``ai`` with its OpenAI, OpenAI-compatible and
Anthropic providers). Each test runs its cases in one ``node`` process (``tests/js/run.mjs``);
every request a case makes is recorded, and an answer whose ``x-routerhub-dropped`` names a
field the SDK sent fails the test (``tests/routing/js.py``)."""

from __future__ import annotations

import struct
from typing import Any

import orjson
import pytest

from routing.fake_upstream.answers import answer_text, count_tokens
from routing.fake_upstream.embeddings import embedding_vector
from tests.routing.js import Step, run_js, run_js_raw
from tests.routing.world import World, base_catalog, endpoint, model

UPSTREAM = {"test/gpt": "gpt-4o-mini", "test/claude": "claude-sonnet-4-5",
            "test/gemini": "gemini-2.5-flash"}  # fmt: skip
MODELS = list(UPSTREAM)
BAD_KEY = "rh-live-not-a-real-key"


def js(world: World, *steps: Step) -> list[Any]:
    return run_js(world.gateway_url, world.key, *steps)


def _broke_key() -> str:
    from tests.factories import key_make, organization_make

    return key_make(organization_make(name="Broke"))


def _person(value: Any) -> None:
    assert set(value) == {"name", "age"} and isinstance(value["age"], int), value


def _catalog_with(world: World, *extra: tuple[str, list[str] | None, str]) -> None:
    """The base catalog plus models on fake-openai: ``(model id, capabilities, upstream)``."""
    data = base_catalog(world.fake_url)
    for model_id, capabilities, upstream in extra:
        data["models"].append(model(model_id, capabilities))
        data["endpoints"].append(endpoint(model_id, "fake-openai", upstream, "0.02", "0.04"))
    world.catalog(data)


# --- openai-node --------------------------------------------------------------------------------


def test_openai_chat_whole_and_streamed_with_the_usage_chunk(world: World) -> None:
    whole, *streams = js(world, {"case": "openai.chat", "model": "test/gpt", "prompt": "What is 6*7?"},
                         *({"case": "openai.chatStream", "model": m, "prompt": "Tell me about tea"} for m in MODELS))  # fmt: skip

    assert whole["id"].startswith("gen-") and whole["model"] == "test/gpt"
    assert whole["choices"][0]["message"]["content"] == answer_text("gpt-4o-mini", "What is 6*7?")
    assert whole["provider"] == "fake-openai" and whole["usage"]["cost"] > 0
    assert world.usage_record(whole["id"]).status == "succeeded"
    for name, chunks in zip(MODELS, streams, strict=True):
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert text == answer_text(UPSTREAM[name], "Tell me about tea"), name
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["cost"] > 0, name
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
        assert len({c["id"] for c in chunks}) == 1 and world.usage_record(chunks[0]["id"]).streamed


def test_openai_tool_call_round_trip(world: World) -> None:
    results = js(world, *({"case": "openai.tools", "model": m} for m in MODELS))

    for name, result in zip(MODELS, results, strict=True):
        first = result["first"]["choices"][0]
        call = first["message"]["tool_calls"][0]
        assert first["finish_reason"] == "tool_calls" and call["function"]["name"] == "get_weather"
        assert orjson.loads(call["function"]["arguments"]) == {"city": "Lisbon"}, name
        assert "temp_c" in result["second"]["choices"][0]["message"]["content"], name


def test_openai_stream_helper_announces_each_tool_call(world: World) -> None:
    """``chat.completions.stream`` emits ``tool_calls.function.arguments.done`` on a finish
    that follows the call's deltas: Gemini's tool call came with its finish in one chunk, and
    the event never fired (the finish now has a chunk of its own, as at OpenAI)."""
    results = js(world, *({"case": "openai.streamHelper", "model": m} for m in MODELS))

    for name, result in zip(MODELS, results, strict=True):
        call = result["final"]["choices"][0]["message"]["tool_calls"][0]
        assert call["function"]["name"] == "get_weather" and call["id"], name
        assert orjson.loads(call["function"]["arguments"]) == {"city": "Lisbon"}, name
        done = [(e["name"], orjson.loads(e["arguments"])) for e in result["toolArgs"]]
        assert done == [("get_weather", {"city": "Lisbon"})], name


def test_openai_run_tools_calls_the_function_and_answers(world: World) -> None:
    steps = [{"case": "openai.runTools", "model": m, "stream": m != "test/gpt"} for m in MODELS]

    for name, result in zip(MODELS, js(world, *steps), strict=True):
        assert result["calls"] == [{"city": "Lisbon"}] and "temp_c" in result["content"], name


def test_openai_json_schema_parse_returns_the_object(world: World) -> None:
    for result in js(world, *({"case": "openai.structured", "model": m} for m in MODELS)):
        _person(result["parsed"])
        assert orjson.loads(result["content"]) == result["parsed"]


def test_openai_embeddings_decode_the_default_base64_and_floats(world: World) -> None:
    _catalog_with(world, ("test/embed", ["embeddings"], "text-embedding-3-small"))

    (result,) = js(world, {"case": "openai.embeddings", "model": "test/embed"})

    texts = ["first text", "second, longer text"]
    expected = [embedding_vector("text-embedding-3-small", t) for t in texts]
    as_float32 = [list(struct.unpack(f"<{len(v)}f", struct.pack(f"<{len(v)}f", *v))) for v in expected]  # fmt: skip
    assert [d["index"] for d in result["default"]] == [0, 1]
    assert [d["embedding"] for d in result["default"]] == as_float32  # decoded from base64
    assert result["float"] == expected
    assert result["usage"]["prompt_tokens"] == sum(count_tokens(t) for t in texts)


def test_openai_responses_whole_streamed_and_parsed(world: World) -> None:
    ask = {"case": "openai.responses", "prompt": "Tell me about tea"}
    direct, routed, parsed = js(world, ask | {"model": "test/gpt"}, ask | {"model": "router/auto"},
                                {"case": "openai.responsesParse", "model": "test/claude"})  # fmt: skip

    for result in (direct, routed):
        whole, final = result["whole"], result["final"]
        assert whole["object"] == "response" and whole["status"] == "completed"
        assert whole["output_text"] == final["output_text"] == result["deltas"]
        assert result["kinds"][0] == "response.created"
        assert result["kinds"][-1] == "response.completed"
        assert final["usage"]["output_tokens"] > 0
    assert direct["whole"]["output_text"] == answer_text("gpt-4o-mini", "Tell me about tea")
    assert routed["whole"]["routing"]["chosen"] == routed["whole"]["model"]
    _person(parsed["parsed"])


def test_openai_responses_function_call_round_trip(world: World) -> None:
    names = ["test/gpt", "test/claude"]
    for name, result in zip(names, js(world, *({"case": "openai.responsesTools", "model": m} for m in names)), strict=True):  # fmt: skip
        assert result["call"]["name"] == "get_weather", name
        assert orjson.loads(result["call"]["arguments"]) == {"city": "Lisbon"}, name
        assert "response.function_call_arguments.delta" in result["kinds"], name
        assert "temp_c" in result["second"]["output_text"], name


def test_openai_router_model_and_the_model_list(world: World) -> None:
    routed, models = js(world, {"case": "openai.chat", "model": "router/auto", "prompt": "hi"},
                        {"case": "openai.models", "model": "test/claude"})  # fmt: skip

    assert routed["routing"]["chosen"] == routed["model"] and routed["routing"]["ranked"]
    assert world.usage_record(routed["id"]).router == "router/auto"
    assert set(MODELS) <= set(models["ids"]) and models["one"]["id"] == "test/claude"


def test_openai_errors_are_the_sdk_typed_errors_with_the_message(world: World) -> None:
    errors = js(world, {"case": "openai.error", "body": {"temperature": "hot"}},
                {"case": "openai.error", "key": BAD_KEY}, {"case": "openai.error", "key": _broke_key()})  # fmt: skip

    expected = [(400, "BadRequestError", "bad_request"), (401, "AuthenticationError", "unauthorized"),
                (402, "APIError", "insufficient_credits")]  # fmt: skip
    for (status, thrown, error_type), error in zip(expected, errors, strict=True):
        assert (error["status"], error["thrown"], error["type"]) == (status, thrown, error_type)
        assert error["classes"]["APIError"] and error["requestID"]
        assert error["message"] == f"{status} {error['body']['message']}"
    assert "temperature" in errors[0]["message"] and errors[0]["param"] == "temperature"
    assert world.upstream_requests() == []


@pytest.mark.parametrize("case", ["openai.retried", "vercel.retried"])
def test_retry_waits_the_retry_after_of_a_paused_provider(
    world: World, settings: Any, case: str
) -> None:
    """Every endpoint of the model paused (its breaker open) is a 503 with ``Retry-After``; the
    SDK's own first backoff (openai-node: under a second; the AI SDK: 2 s) would come back while
    it still is, so with one retry only waiting out ``Retry-After`` gets the answer."""
    from routing.gateway import health
    from routing.models import Endpoint

    settings.GATEWAY_BREAKER_FAILURES, settings.GATEWAY_BREAKER_COOLDOWN = 1, 4.0
    health.health_record_failure(Endpoint.objects.get(model_id="test/gpt").pk)

    (outcome,) = run_js_raw(world.gateway_url, world.key,
                            {"case": case, "model": "test/gpt", "provider": "compatible"})  # fmt: skip

    first, second = outcome["exchanges"]
    assert (first["status"], second["status"]) == (503, 200)
    assert int(first["retryAfter"]) >= 1 and first["shouldRetry"] is None
    answer = outcome["ok"].get("content") or outcome["ok"].get("text")
    assert answer == answer_text("gpt-4o-mini", "hi")


def test_a_mid_stream_failure_is_an_error_each_sdk_raises(world: World, settings: Any) -> None:
    settings.GATEWAY_BREAKER_FAILURES = 100  # each case meets the cut, not a paused provider
    _catalog_with(world, ("test/cut", None, "gpt-4o@disconnect_after=4"))
    steps = [{"case": "openai.chatStream", "model": "test/cut", "prompt": "Tell a long story"},
             {"case": "anthropic.stream", "model": "test/cut", "prompt": "Tell a long story"},
             *({"case": "vercel.stream", "provider": p, "model": "test/cut", "prompt": "Tell a long story"}
               for p in ("openai", "openai-chat", "compatible", "anthropic"))]  # fmt: skip

    outcomes = run_js_raw(world.gateway_url, world.key, *steps)

    errors = [outcome["error"] for outcome in outcomes]
    assert [e["thrown"] for e in errors[:2]] == ["APIError", "APIError"], errors
    for step, outcome in zip(steps, outcomes, strict=True):  # the AI SDK's are error parts
        assert "failed mid-stream" in outcome["error"]["message"], (step, outcome["error"])
        assert [e["status"] for e in outcome["exchanges"]] == [200], step


# --- @anthropic-ai/sdk --------------------------------------------------------------------------


def test_anthropic_messages_with_a_system_prompt(world: World) -> None:
    names = ["test/claude", "test/gpt"]
    ask = {"case": "anthropic.messages", "prompt": "Tell me about owls", "system": "Be brief."}

    for name, message in zip(names, js(world, *(ask | {"model": m} for m in names)), strict=True):
        assert message["type"] == "message" and message["role"] == "assistant"
        assert message["content"][0]["text"] == answer_text(UPSTREAM[name], "Tell me about owls")
        assert message["stop_reason"] == "end_turn" and message["usage"]["output_tokens"] > 0
    claude, gpt = (r["body"] for r in world.upstream_requests())
    assert claude["system"] == "Be brief."
    assert gpt["messages"][0] == {"role": "system", "content": "Be brief."}


def test_anthropic_streams_text_and_tool_use(world: World) -> None:
    text_steps = [{"case": "anthropic.stream", "model": m, "prompt": "Describe the sea"} for m in ("test/claude", "test/gemini")]  # fmt: skip
    results = js(
        world, *text_steps, *({"case": "anthropic.streamTools", "model": m} for m in MODELS)
    )

    for result in results[:2]:
        assert result["kinds"][0] == "message_start" and result["kinds"][-1] == "message_stop"
        assert "content_block_delta" in result["kinds"] and "message_delta" in result["kinds"]
        assert result["text"] and result["final"]["content"][0]["text"] == result["text"]
        assert result["final"]["usage"]["output_tokens"] > 0
    for name, result in zip(MODELS, results[2:], strict=True):
        use = next(b for b in result["final"]["content"] if b["type"] == "tool_use")
        assert (use["name"], use["input"]) == ("get_weather", {"city": "Lisbon"}), name
        assert (
            "input_json_delta" in result["kinds"] and result["final"]["stop_reason"] == "tool_use"
        )


def test_anthropic_tool_use_round_trip(world: World) -> None:
    names = ["test/claude", "test/gpt"]
    for name, result in zip(names, js(world, *({"case": "anthropic.tools", "model": m} for m in names)), strict=True):  # fmt: skip
        use = next(b for b in result["first"]["content"] if b["type"] == "tool_use")
        assert result["first"]["stop_reason"] == "tool_use", name
        assert (use["name"], use["input"]) == ("get_weather", {"city": "Lisbon"}), name
        assert "temp_c" in result["second"]["content"][0]["text"], name


def test_anthropic_errors_are_typed(world: World) -> None:
    errors = js(world, {"case": "anthropic.error", "body": {"messages": "not a list"}},
                {"case": "anthropic.error", "key": BAD_KEY}, {"case": "anthropic.error", "key": _broke_key()})  # fmt: skip

    expected = [(400, "BadRequestError", "invalid_request_error"),
                (401, "AuthenticationError", "authentication_error"),
                (402, "PaymentRequiredError", "billing_error")]  # fmt: skip
    for (status, thrown, error_type), error in zip(expected, errors, strict=True):
        assert (error["status"], error["thrown"], error["type"]) == (status, thrown, error_type)
        assert error["classes"]["APIError"] and error["requestID"]
        assert error["body"]["error"]["message"] in error["message"]


def test_anthropic_count_tokens_and_models(world: World) -> None:
    (result,) = js(world, {"case": "anthropic.countTokens", "model": "test/claude"})

    assert result["count"]["input_tokens"] > 0 and "test/claude" in result["ids"]


# --- Vercel AI SDK ------------------------------------------------------------------------------

PROVIDERS = ["openai", "openai-chat", "compatible", "anthropic"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_vercel_text_stream_tools_and_objects(world: World, provider: str) -> None:
    """generateText, streamText, tool calling (whole and streamed) and generateObject /
    streamObject through one provider pointed at RouterHub."""
    at = {"provider": provider}
    text, stream, tools, obj, streamed_obj, *streamed_tools = js(world,
        at | {"case": "vercel.text", "model": "test/claude", "prompt": "Explain rain"},
        at | {"case": "vercel.stream", "model": "test/gpt", "prompt": "Tell me about tea"},
        at | {"case": "vercel.tools", "model": "test/gpt"},
        at | {"case": "vercel.object", "model": "test/claude"},
        at | {"case": "vercel.streamedObject", "model": "test/gpt"},
        *(at | {"case": "vercel.streamTools", "model": m} for m in ("test/claude", "test/gemini")),
    )  # fmt: skip

    assert text["text"] == answer_text("claude-sonnet-4-5", "Explain rain")
    assert text["finishReason"] == "stop" and text["usage"]["outputTokens"] > 0
    assert text["modelId"] == "test/claude" and text["responseId"]
    assert (
        "".join(stream["deltas"])
        == stream["text"]
        == answer_text("gpt-4o-mini", "Tell me about tea")
    )
    assert len(stream["deltas"]) > 1 and stream["finishReason"] == "stop"
    assert stream["usage"]["outputTokens"] > 0
    assert tools["calls"] == ["Lisbon"] and tools["steps"][0]["finishReason"] == "tool-calls"
    assert tools["steps"][0]["toolCalls"] == [{"name": "get_weather", "input": {"city": "Lisbon"}}]
    assert "temp_c" in tools["text"]
    _person(obj["object"])
    _person(streamed_obj["object"])
    for result in streamed_tools:
        assert result["calls"] == ["Lisbon"] and result["steps"] == 2
        assert "tool-call" in result["parts"] and "temp_c" in result["text"]


def test_vercel_second_turn_from_response_messages(world: World) -> None:
    """A conversation continued the AI SDK's way, from the first answer's ``response.messages``:
    its OpenAI provider (the Responses API, ``store`` true by default) refers to the stored
    answer's message as ``{"type": "item_reference", "id": "msg_…"}`` (a 400 before)."""
    steps = [{"case": "vercel.conversation", "provider": p, "model": "test/gpt", "prompt": "Tell me about tea"} for p in PROVIDERS]  # fmt: skip

    outcomes = run_js_raw(world.gateway_url, world.key, *steps)

    for step, outcome in zip(steps, outcomes, strict=True):
        assert "ok" in outcome, (step, outcome.get("error"))
        assert outcome["ok"]["first"] == answer_text("gpt-4o-mini", "Tell me about tea"), step
        assert outcome["ok"]["second"] == answer_text("gpt-4o-mini", "And then?"), step
    sent = outcomes[0]["exchanges"][1]["sent"]["input"]
    assert sent[1]["type"] == "item_reference" and sent[1]["id"].startswith("msg_gen-")
    upstream = world.upstream_requests("/v1/chat/completions")[1]["body"]["messages"]
    texts = [(m["role"], m["content"] if isinstance(m["content"], str) else "".join(p["text"] for p in m["content"]))
             for m in upstream]  # fmt: skip
    assert texts == [("user", "Tell me about tea"),
                     ("assistant", answer_text("gpt-4o-mini", "Tell me about tea")), ("user", "And then?")]  # fmt: skip


def test_vercel_embeddings(world: World) -> None:
    _catalog_with(world, ("test/embed", ["embeddings"], "text-embedding-3-small"))

    results = js(world, *({"case": "vercel.embeddings", "provider": p, "model": "test/embed"} for p in ("openai", "compatible")))  # fmt: skip

    first, second = (embedding_vector("text-embedding-3-small", t) for t in ("first text", "second, longer text"))  # fmt: skip
    for result in results:
        assert result["one"] == first and result["many"] == [first, second]
        assert result["usage"]["tokens"] == count_tokens("first text second, longer text")


def test_vercel_errors_are_api_call_errors(world: World) -> None:
    broke = _broke_key()
    steps = [{"case": "vercel.error", "provider": p, "model": "test/gpt", "key": key}
             for p in PROVIDERS for key in (BAD_KEY, broke)]  # fmt: skip

    for step, error in zip(steps, js(world, *steps), strict=True):
        status = 401 if step["key"] == BAD_KEY else 402
        assert error["isAPICallError"] and error["status"] == status, (step, error)
        assert error["retryable"] is False and len(error["message"]) > 10, (step, error)
