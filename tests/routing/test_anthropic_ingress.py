"""Anthropic Messages in, canonical out, and back: the translation behind ``/v1/messages``."""

from __future__ import annotations

import orjson
import pytest

from routerhub.errors import BadRequest
from routing.ingress.anthropic import (
    MessagesStreamEncoder,
    canonical_to_messages_response,
    messages_request_to_canonical,
)
from routing.providers.base import Usage


def test_messages_request_becomes_canonical_with_tool_results_before_user_text() -> None:
    body = {
        "model": "test/gpt", "max_tokens": 100, "system": [{"type": "text", "text": "Be kind."}],
        "stop_sequences": ["STOP"], "metadata": {"user_id": "u7"}, "tool_choice": {"type": "any"},
        "tools": [{"name": "lookup", "description": "Look up", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Find it"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "found"},
                                         {"type": "text", "text": "thanks"}]},
        ],
    }  # fmt: skip

    canonical = messages_request_to_canonical(body)

    assert canonical["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": [{"type": "text", "text": "Find it"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "found"},
        {"role": "user", "content": [{"type": "text", "text": "thanks"}]},
    ]  # fmt: skip
    assert (
        canonical["max_tokens"] == 100
        and canonical["stop"] == ["STOP"]
        and canonical["user"] == "u7"
    )
    assert canonical["tool_choice"] == "required"
    assert canonical["tools"][0]["function"]["name"] == "lookup"


def test_messages_request_without_max_tokens_is_rejected() -> None:
    with pytest.raises(BadRequest):
        messages_request_to_canonical({"model": "m", "messages": []})


def test_canonical_response_becomes_a_messages_object() -> None:
    response = {"id": "gen-1", "model": "test/gpt", "provider": "p", "usage": {"cost": 0.01},
                "choices": [{"message": {"content": "Hi", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]},
                    "finish_reason": "tool_calls"}]}  # fmt: skip

    message = canonical_to_messages_response(
        response, Usage(prompt_tokens=10, completion_tokens=3, cached_tokens=4)
    )

    assert message["content"] == [
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert (
        message["usage"]["input_tokens"] == 6 and message["usage"]["cache_read_input_tokens"] == 4
    )


def _events(raw: bytes) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    out = []
    for block in raw.decode().strip().split("\n\n"):
        name, data = block.split("\n")
        out.append((name.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return out


def test_stream_encoder_emits_the_messages_event_sequence() -> None:
    encoder = MessagesStreamEncoder("gen-1", "test/gpt")
    raw = encoder.start(None)
    raw += encoder.chunk({"index": 0, "delta": {"role": "assistant", "content": "Hel"}})
    raw += encoder.chunk({"index": 0, "delta": {"content": "lo"}})
    raw += encoder.chunk(
        {
            "index": 0,
            "delta": {
                "tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]
            },
        }
    )
    raw += encoder.chunk(
        {
            "index": 0,
            "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
            "finish_reason": "tool_calls",
        }
    )
    raw += encoder.finish(Usage(5, 7), 0.5)

    names = [name for name, _ in _events(raw)]

    assert names == ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]  # fmt: skip
    delta = _events(raw)[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] == 7


@pytest.mark.parametrize(("field", "value"), [
    ("thinking", {"type": "enabled"}),  # no budget_tokens
    ("thinking", {"type": "enabled", "budget_tokens": 1000}),  # under Anthropic's 1024
    ("thinking", {"type": "enabled", "budget_tokens": 4096}),  # not under max_tokens
    ("thinking", {"type": "sometimes", "budget_tokens": 2048}),
    ("thinking", "on"),
    ("output_config", {"format": {"type": "json_schema"}}),  # no schema
    ("output_config", {"format": {"type": "xml", "schema": {}}}),
    ("output_config", []),
])  # fmt: skip
def test_malformed_thinking_and_output_config_are_refused_naming_the_field(
    field: str, value: object
) -> None:
    body = {"model": "m", "max_tokens": 2048, "messages": [], field: value}

    with pytest.raises(BadRequest) as caught:
        messages_request_to_canonical(body)

    assert caught.value.param == field and field in str(caught.value)


def test_unsigned_reasoning_of_an_openai_style_model_becomes_a_thinking_block() -> None:
    response = {"id": "gen-1", "model": "test/gpt", "provider": "p", "usage": {"cost": 0.0},
                "choices": [{"message": {"content": "42", "reasoning": "6 times 7"}, "finish_reason": "stop"}]}  # fmt: skip
    encoder = MessagesStreamEncoder("gen-1", "test/gpt")

    message = canonical_to_messages_response(response, Usage(5, 3))
    raw = encoder.chunk({"index": 0, "delta": {"reasoning": "6 times 7"}})
    raw += encoder.chunk({"index": 0, "delta": {"content": "42"}})

    assert message["content"] == [
        {"type": "thinking", "thinking": "6 times 7", "signature": ""},
        {"type": "text", "text": "42"},
    ]
    starts = [e["content_block"]["type"] for n, e in _events(raw) if n == "content_block_start"]
    assert starts == ["thinking", "text"]
