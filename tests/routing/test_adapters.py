"""Translation both ways, as pure functions: canonical (OpenAI) ↔ Anthropic and Gemini."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from routing.providers.anthropic import AnthropicAdapter, usage_from_anthropic
from routing.providers.base import Target, UpstreamError, UpstreamRequest, sse_events
from routing.providers.gemini import GeminiAdapter, usage_from_gemini
from routing.providers.openai_compat import OpenAICompatAdapter, usage_from_openai
from routing.providers.stream_checks import choices_fed

TARGET = Target(
    base_url="https://up.example/v1",
    upstream_model="up-model",
    api_key="secret-key",
    max_tokens=256,
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                       "additionalProperties": False},
    },
}  # fmt: skip
TOOL_CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
]  # fmt: skip


def test_openai_request_renames_model_bounds_output_and_asks_for_stream_usage() -> None:
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 999,
            "temperature": 0.2, "seed": 7, "provider": {"sort": "price"}, "models": ["x/y"]}  # fmt: skip
    request = OpenAICompatAdapter().build_request(body, TARGET, stream=True)

    assert request.url == "https://up.example/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer secret-key"
    assert request.body == {"model": "up-model", "messages": body["messages"], "max_tokens": 256, "temperature": 0.2,
                            "seed": 7, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip


def test_openai_request_uses_the_providers_max_tokens_field_and_stream_quirks() -> None:
    target = Target(
        "https://up.example/v1",
        "o4-mini",
        None,
        100,
        {"max_tokens_field": "max_completion_tokens", "stream_options": False},
    )

    request = OpenAICompatAdapter().build_request(
        {"messages": [], "max_tokens": 5}, target, stream=True
    )

    assert request.body["max_completion_tokens"] == 100
    assert "max_tokens" not in request.body and "stream_options" not in request.body
    assert "authorization" not in request.headers


def test_openai_response_usage_reads_cached_and_reasoning_tokens() -> None:
    body = {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4},
                      "completion_tokens_details": {"reasoning_tokens": 2}}}  # fmt: skip

    completion = OpenAICompatAdapter().parse_response(body, UpstreamRequest("", {}, {}))

    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 5)
    assert (completion.usage.cached_tokens, completion.usage.reasoning_tokens) == (4, 2)


def test_anthropic_request_moves_system_merges_tool_results_and_maps_tools() -> None:
    body = {"messages": [*TOOL_CONVERSATION, {"role": "user", "content": "And tomorrow?"}], "tools": [WEATHER_TOOL],
            "tool_choice": "required", "temperature": 1.7, "stop": "END", "user": "u-1"}  # fmt: skip

    request = AnthropicAdapter().build_request(body, TARGET, stream=False)

    assert request.url == "https://up.example/v1/v1/messages"
    assert request.headers["x-api-key"] == "secret-key"
    assert request.headers["anthropic-version"] == "2023-06-01"
    sent = request.body
    assert sent["system"] == "Be brief."
    assert sent["max_tokens"] == 256 and sent["temperature"] == 1.0
    assert sent["stop_sequences"] == ["END"] and sent["metadata"] == {"user_id": "u-1"}
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": '{"temp_c": 21}'},
                                     {"type": "text", "text": "And tomorrow?"}]},
    ]  # fmt: skip
    assert sent["tools"] == [{"name": "get_weather", "description": "Weather for a city",
                              "input_schema": WEATHER_TOOL["function"]["parameters"]}]  # fmt: skip
    assert sent["tool_choice"] == {"type": "any"}


def test_anthropic_request_translates_images_from_data_and_http_urls() -> None:
    content = [{"type": "text", "text": "What is this?"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
               {"type": "image_url", "image_url": {"url": "https://img.example/cat.jpg"}}]  # fmt: skip

    request = AnthropicAdapter().build_request(
        {"messages": [{"role": "user", "content": content}]}, TARGET, stream=False
    )

    blocks = request.body["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert blocks[2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://img.example/cat.jpg"},
    }


def test_anthropic_json_schema_becomes_a_forced_tool_and_comes_back_as_text() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    body = {"messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}}  # fmt: skip
    adapter = AnthropicAdapter()

    request = adapter.build_request(body, TARGET, stream=False)
    response = {"content": [{"type": "tool_use", "id": "t", "name": "json_response", "input": {"answer": "42"}}],
                "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 4}}  # fmt: skip
    completion = adapter.parse_response(response, request)

    assert request.body["tool_choice"] == {"type": "tool", "name": "json_response"}
    assert request.body["tools"][0]["input_schema"] == schema
    assert orjson.loads(completion.choices[0]["message"]["content"]) == {"answer": "42"}
    assert completion.choices[0]["finish_reason"] == "stop"


def test_anthropic_response_maps_tool_use_stop_reasons_and_cache_usage() -> None:
    body = {"id": "msg_1", "content": [{"type": "text", "text": "Let me check."},
                                       {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 0, "output_tokens": 7}}  # fmt: skip

    completion = AnthropicAdapter().parse_response(body, UpstreamRequest("", {}, {}))

    choice = completion.choices[0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Oslo"}',
    }
    assert completion.usage is not None
    assert (
        completion.usage.prompt_tokens,
        completion.usage.cached_tokens,
        completion.usage.completion_tokens,
    ) == (100, 90, 7)


def test_anthropic_stop_reasons_translate_to_openai_finish_reasons() -> None:
    adapter = AnthropicAdapter()
    for stop_reason, finish in (
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
    ):
        body = {"content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason, "usage": {}}
        assert (
            adapter.parse_response(body, UpstreamRequest("", {}, {})).choices[0]["finish_reason"]
            == finish
        )


def test_anthropic_stream_events_become_canonical_chunks_with_usage() -> None:
    decoder = AnthropicAdapter().stream_decoder(UpstreamRequest("", {}, {}))
    events = [
        ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 12, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip

    chunks = [c for name, data in events for c in decoder.feed(name, orjson.dumps(data).decode())]

    deltas = [c["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"content": "Hi"}
    assert deltas[2]["tool_calls"][0] == {
        "index": 0,
        "id": "toolu_9",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    assert deltas[3]["tool_calls"][0] == {"index": 0, "function": {"arguments": '{"a":'}}
    assert chunks[-1]["finish_reason"] == "tool_calls"
    assert decoder.finished and decoder.usage is not None
    assert (decoder.usage.prompt_tokens, decoder.usage.completion_tokens) == (12, 30)


def test_gemini_request_builds_contents_system_tools_and_names_tool_results() -> None:
    body = {"messages": TOOL_CONVERSATION, "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "temperature": 0.5, "top_p": 0.9, "stop": ["X"], "seed": 3}  # fmt: skip

    request = GeminiAdapter().build_request(body, TARGET, stream=True)

    assert request.url == "https://up.example/v1/models/up-model:streamGenerateContent?alt=sse"
    assert request.headers["x-goog-api-key"] == "secret-key"
    sent = request.body
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}}]},
    ]  # fmt: skip
    assert sent["generationConfig"] == {
        "maxOutputTokens": 256,
        "temperature": 0.5,
        "topP": 0.9,
        "seed": 3,
        "stopSequences": ["X"],
    }
    declaration = sent["tools"][0]["functionDeclarations"][0]
    assert declaration["parametersJsonSchema"] == {  # JSON Schema: additionalProperties kept
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    assert sent["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


def test_gemini_request_inlines_data_images_and_sets_json_mode() -> None:
    content = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4A=="}},
    ]
    body = {
        "messages": [{"role": "user", "content": content}],
        "response_format": {"type": "json_object"},
    }

    request = GeminiAdapter().build_request(body, TARGET, stream=False)

    assert request.url.endswith("/models/up-model:generateContent")
    assert request.body["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/jpeg", "data": "/9j/4A=="}
    }
    assert request.body["generationConfig"]["responseMimeType"] == "application/json"


def test_gemini_response_adds_thinking_tokens_to_completion_and_maps_function_calls() -> None:
    body = {"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 6, "thoughtsTokenCount": 40, "cachedContentTokenCount": 8}}  # fmt: skip

    completion = GeminiAdapter().parse_response(body, UpstreamRequest("", {}, {}))

    choice = completion.choices[0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Rome"}',
    }
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 46 and completion.usage.reasoning_tokens == 40
    assert (completion.usage.prompt_tokens, completion.usage.cached_tokens) == (20, 8)


def test_gemini_made_up_call_ids_are_unique_across_answers_and_streams() -> None:
    """Gemini may send a function call without an id: the one made up for it is unique, not
    ``call_0`` in every answer (a Responses ``fc_`` item reference finds its answer by it)."""
    call = {"functionCall": {"name": "get_weather", "args": {}}}
    body = {"candidates": [{"content": {"role": "model", "parts": [call, call]}, "index": 0}]}
    ids = []
    for _ in range(2):
        completion = GeminiAdapter().parse_response(body, UpstreamRequest("", {}, {}))
        ids += [c["id"] for c in completion.choices[0]["message"]["tool_calls"]]
        decoder = GeminiAdapter().stream_decoder(UpstreamRequest("", {}, {}))
        for chunk in decoder.feed(None, orjson.dumps(body).decode()):
            ids += [c["id"] for c in chunk["delta"]["tool_calls"]]

    assert len(ids) == 8 and len(set(ids)) == 8


def test_gemini_finish_reasons_translate() -> None:
    adapter = GeminiAdapter()
    for reason, finish in (
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
    ):
        body = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
        assert (
            adapter.parse_response(body, UpstreamRequest("", {}, {})).choices[0]["finish_reason"]
            == finish
        )


def test_gemini_stream_chunks_become_deltas_and_keep_the_last_usage() -> None:
    decoder = GeminiAdapter().stream_decoder(UpstreamRequest("", {}, {}))
    first = {
        "candidates": [{"content": {"parts": [{"text": "Hel"}]}}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1},
    }
    last = {"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "MAX_TOKENS"}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2}}  # fmt: skip

    chunks = decoder.feed(None, orjson.dumps(first).decode()) + decoder.feed(
        None, orjson.dumps(last).decode()
    )

    assert [c["delta"].get("content") for c in chunks] == ["Hel", "lo"]
    assert chunks[0]["delta"]["role"] == "assistant"
    assert chunks[1]["finish_reason"] == "length"
    assert decoder.finished and decoder.usage is not None and decoder.usage.completion_tokens == 2


def test_sse_parser_handles_crlf_multiline_data_and_split_chunks() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for piece in (
            b'event: a\r\ndata: {"x":',
            b" 1}\r\n\r\n: keepalive\r\n\r\ndata: line1\ndata: line2\n\n",
            b"data: [DONE]\n\n",
        ):
            yield piece

    async def collect() -> list[tuple[str | None, str]]:
        return [event async for event in sse_events(chunks(), max_event=1024)]

    assert asyncio.run(collect()) == [("a", '{"x": 1}'), (None, "line1\nline2"), (None, "[DONE]")]


def test_impossible_token_counts_read_as_zero_and_mark_the_usage_clamped() -> None:
    for value in [-5, 1.5, "12", True, 10**12, [3], None]:  # None: absent, not impossible
        openai_usage = usage_from_openai({"prompt_tokens": 10, "completion_tokens": value})
        anthropic_usage = usage_from_anthropic({"input_tokens": value, "output_tokens": 4})
        gemini_usage = usage_from_gemini({"promptTokenCount": 10, "candidatesTokenCount": value})
        for usage in (openai_usage, anthropic_usage, gemini_usage):
            assert usage is not None
            assert usage.clamped is (value is not None), (value, usage)
        assert openai_usage is not None and gemini_usage is not None and anthropic_usage is not None
        assert (openai_usage.prompt_tokens, openai_usage.completion_tokens) == (10, 0)
        assert (gemini_usage.prompt_tokens, gemini_usage.completion_tokens) == (10, 0)
        assert (anthropic_usage.prompt_tokens, anthropic_usage.completion_tokens) == (0, 4)
    whole = usage_from_openai({"prompt_tokens": 10.0, "completion_tokens": 3})
    assert whole is not None and not whole.clamped and whole.prompt_tokens == 10


def test_anthropic_forwards_thinking_and_native_structured_output_only_when_well_formed() -> None:
    ask = {
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_object"},
    }
    native = {"format": {"type": "json_schema", "schema": {"type": "object"}}}

    forwarded = (
        AnthropicAdapter()
        .build_request(
            ask | {"thinking": {"type": "adaptive"}, "output_config": native}, TARGET, stream=False
        )
        .body
    )
    garbled = (
        AnthropicAdapter()
        .build_request(ask | {"thinking": "on", "output_config": "json"}, TARGET, stream=False)
        .body
    )

    assert forwarded["thinking"] == {"type": "adaptive"} and forwarded["output_config"] == native
    assert "tools" not in forwarded  # structured outputs, not the forced-tool emulation
    assert "thinking" not in garbled and "output_config" not in garbled
    assert garbled["tool_choice"] == {"type": "tool", "name": "json_response"}


def test_streamed_images_not_a_list_of_objects_are_a_malformed_stream() -> None:
    """A delta's ``images`` is checked as a whole answer's (a list of objects): a string was
    spread into its characters beside list content, and passed on as it came otherwise."""
    decoder = OpenAICompatAdapter().stream_decoder(UpstreamRequest("", {}, {}))
    text = [{"type": "text", "text": "hi"}]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    for delta in ({"images": "abc", "content": text}, {"images": "abc"}, {"images": ["abc"]}):
        chunk = {"id": "g", "choices": [{"index": 0, "delta": delta}]}
        with pytest.raises(UpstreamError, match="malformed stream chunk"):
            choices_fed(decoder, None, orjson.dumps(chunk).decode())
    good = {"id": "g", "choices": [{"index": 0, "delta": {"images": [image], "content": text}}]}
    fed = choices_fed(decoder, None, orjson.dumps(good).decode())
    assert fed[0]["delta"]["images"] == [image] and fed[0]["delta"]["content"] == "hi"


def test_an_anthropic_block_delta_that_is_not_an_object_is_a_malformed_stream() -> None:
    """Only an absent or null ``delta`` is empty: ``[]`` (before: read as ``{}``, skipped) is
    malformed, as ``[1]`` was."""
    decoder = AnthropicAdapter().stream_decoder(UpstreamRequest("", {}, {}))
    event = {"type": "content_block_delta", "index": 0, "delta": []}
    with pytest.raises(UpstreamError, match="malformed stream chunk"):
        choices_fed(decoder, "content_block_delta", orjson.dumps(event).decode())


def test_an_anthropic_message_delta_that_is_not_an_object_is_a_malformed_stream() -> None:
    """As a block's: ``[]`` (before: read as ``{}``, its stop_reason dropped unsaid) is
    malformed, not a stream that simply never said why it stopped."""
    decoder = AnthropicAdapter().stream_decoder(UpstreamRequest("", {}, {}))
    event = {"type": "message_delta", "delta": [], "usage": {"output_tokens": 3}}
    with pytest.raises(UpstreamError, match="malformed stream chunk"):
        choices_fed(decoder, "message_delta", orjson.dumps(event).decode())
