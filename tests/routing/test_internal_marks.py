"""The gateway's own message marks (a failed tool result, a tool's screenshot) are set by its
ingresses only and carried beside the messages (``IngressMarks``), never in them: a client naming
the keys they once were (``_tool_error``, ``_tool_result``) on a message or a content part is not
honoured, at any ingress (the official ``openai`` and ``anthropic`` SDKs, as agents send them)."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from routing.ingress.anthropic import messages_request_parsed
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
    client = world.openai_client()
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
    world.openai_client().chat.completions.create(
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
        world.openai_client().chat.completions.create(
            model="test/plain",
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}
            ],  # type: ignore[list-item]
        )

    assert raised.value.body["param"] == "messages"  # type: ignore[index]
    assert world.upstream_requests() == []


def test_marks_on_a_messages_request_are_not_honoured(world: World) -> None:
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "cold"}
    world.anthropic_client().messages.create(
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
    world.openai_client().responses.create(
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


SCREENSHOT = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}


def test_the_anthropic_ingress_marks_travel_beside_its_messages_never_in_them() -> None:
    """Old code wrote ``_tool_error``/``_tool_result`` keys into the canonical messages."""
    failed = {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
              "content": [{"type": "text", "text": "down"},
                          {"type": "image", "source": SCREENSHOT}]}  # fmt: skip
    body = {"model": "test/claude", "max_tokens": 10, "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [failed, {"type": "image", "source": SCREENSHOT}]},
    ]}  # fmt: skip

    canonical, marks = messages_request_parsed(body)

    messages = canonical["messages"]
    parts = [p for m in messages if isinstance(m["content"], list) for p in m["content"]]
    assert not [k for item in [*messages, *parts] for k in item if k.startswith("_")]
    assert marks.failed_tools == {"toolu_1"}
    tools_image, own_image = messages[-2]["content"][1], messages[-1]["content"][0]
    assert tools_image == own_image  # alike, yet only the tool's is the tool's
    assert marks.is_tool_media(tools_image) and not marks.is_tool_media(own_image)


IMAGE_MARKED = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is it?"}, PNG | {"_tool_result": True}]}]},
    "/v1/messages": {"max_tokens": 50, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is it?"},
        {"type": "image", "source": SCREENSHOT, "_tool_result": True}], "_tool_result": True}]},
    "/v1/responses": {"store": False, "input": [{"role": "user", "_tool_result": True, "content": [
        {"type": "input_text", "text": "What is it?"},
        {"type": "input_image", "image_url": PNG["image_url"]["url"], "_tool_result": True}]}]},
}  # fmt: skip


@pytest.mark.parametrize("path", list(IMAGE_MARKED))
def test_no_ingress_takes_a_clients_image_for_a_tools(world: World, path: str) -> None:
    """An image the client marks as a tool's is its own turn's on every ingress: a model that
    reads no images refuses it (400 naming the messages, nothing sent), no placeholder."""
    _text_only(world)
    answer = httpx.post(f"{world.gateway_url}{path}", timeout=10,
                        json=IMAGE_MARKED[path] | {"model": "test/plain"},
                        headers={"authorization": f"Bearer {world.key}"})  # fmt: skip

    assert answer.status_code == 400, answer.text
    assert "image" in answer.text and world.upstream_requests() == []


def test_a_failed_tool_result_with_an_id_that_is_no_string_is_a_400(world: World) -> None:
    """Collecting the failed ids beside the messages must not trip on an id validation refuses."""
    body = {"model": "test/claude", "max_tokens": 50, "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": {"id": 1}, "is_error": True, "content": "x"}]},
    ]}  # fmt: skip
    answer = httpx.post(f"{world.gateway_url}/v1/messages", json=body, timeout=10,
                        headers={"authorization": f"Bearer {world.key}"})  # fmt: skip

    assert answer.status_code == 400, answer.text
    assert "give tool_use_id (a non-empty string" in answer.text  # refused before translation
    assert world.upstream_requests() == []
