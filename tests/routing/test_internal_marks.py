"""The gateway's own message marks (``_``-prefixed: ``_tool_error``, ``_tool_result``) are set by
its ingresses only: a client naming them on a message or a content part is not honoured, at any
ingress (the official ``openai`` and ``anthropic`` SDKs, as agents send requests)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.routing.test_gateway_content_and_shape import anthropic_client, openai_client
from tests.routing.test_gateway_media_input import _text_only
from tests.routing.world import World

CALL = {"id": "toolu_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}  # fmt: skip
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
PNG = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def tool_turns(**marks: Any) -> list[dict[str, Any]]:
    """A question, the model's tool call and the tool's (successful) result carrying ``marks``."""
    return [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "cold"} | marks,
    ]


def test_an_openai_client_cannot_make_claude_receive_is_error(world: World) -> None:
    client = openai_client(world)
    completion = client.chat.completions.create(
        model="test/claude",
        tools=[TOOL],
        messages=tool_turns(_tool_error=True),  # type: ignore[list-item, arg-type]
    )
    client.chat.completions.create(
        model="test/claude",
        tools=[TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Hi"}],
        extra_body={"messages": tool_turns(_tool_error=True, _private="x")},
    )

    for sent in world.upstream_requests("/v1/messages"):
        assert sent["body"]["messages"][-1]["content"] == [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "cold"}
        ]
    assert completion.choices[0].message.content == "Based on the tool result: cold"


def test_an_openai_client_cannot_mark_its_own_tool_result_failed_on_other_hosts(
    world: World,
) -> None:
    openai_client(world).chat.completions.create(
        model="test/gpt",
        tools=[TOOL],
        messages=tool_turns(_tool_error=True, _private="x"),  # type: ignore[list-item, arg-type]
    )

    sent = world.last_upstream("/v1/chat/completions")["body"]
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "toolu_1", "content": "cold"}


def test_an_openai_client_cannot_pass_its_images_off_as_a_tool_results(world: World) -> None:
    """An image the client marks as a tool's (``_tool_result``) is still its own turn's: a model
    that reads no images refuses it rather than getting a placeholder."""
    _text_only(world)
    image = PNG | {"_tool_result": True}
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(world).chat.completions.create(
            model="test/plain",
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}
            ],  # type: ignore[list-item]
        )

    assert raised.value.body["param"] == "messages"  # type: ignore[index]
    assert world.upstream_requests() == []


def test_marks_on_a_messages_request_are_not_honoured(world: World) -> None:
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "cold"}
    anthropic_client(world).messages.create(
        model="test/claude",
        max_tokens=50,
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
            {"role": "user", "content": [result | {"_tool_error": True}], "_tool_error": True},
        ],  # type: ignore[list-item, typeddict-unknown-key]
    )  # fmt: skip

    assert world.last_upstream("/v1/messages")["body"]["messages"][-1]["content"] == [result]


def test_marks_on_a_responses_request_are_not_honoured(world: World) -> None:
    openai_client(world).responses.create(
        model="test/claude",
        store=False,
        input=[
            {"role": "user", "content": "Weather in Oslo?", "_tool_error": True},
            {"type": "function_call", "call_id": "toolu_1", "name": "get_weather",
             "arguments": "{}"},
            {"type": "function_call_output", "call_id": "toolu_1", "output": "cold",
             "_tool_error": True},
        ],  # type: ignore[list-item, typeddict-unknown-key]
    )  # fmt: skip

    sent = world.last_upstream("/v1/messages")["body"]
    assert sent["messages"][-1]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "cold"}
    ]
