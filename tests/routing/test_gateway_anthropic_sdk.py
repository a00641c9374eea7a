"""The official ``anthropic`` SDK against ``/v1/messages``, served by any adapter."""

from __future__ import annotations

import anthropic
import pytest

from routing.fake_upstream.answers import answer_text
from tests.routing.world import World

LOOKUP_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def client_for(world: World, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=world.gateway_url, api_key=key or world.key, max_retries=0)


@pytest.mark.parametrize(("model", "upstream_model", "path"), [
    ("test/gpt", "gpt-4o-mini", "/v1/chat/completions"),
    ("test/claude", "claude-sonnet-4-5", "/v1/messages"),
    ("test/gemini", "gemini-2.5-flash", ":generateContent"),
])  # fmt: skip
def test_messages_are_served_by_any_adapter(
    world: World, model: str, upstream_model: str, path: str
) -> None:
    message = client_for(world).messages.create(
        model=model,
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "Tell me about owls"}],
    )

    assert message.content[0].type == "text"
    assert message.content[0].text == answer_text(upstream_model, "Tell me about owls")
    assert message.stop_reason == "end_turn"
    assert message.id.startswith("gen-") and message.model == model
    assert message.usage.output_tokens > 0
    assert world.last_upstream(path)


def test_messages_translate_to_the_openai_wire_format(world: World) -> None:
    client_for(world).messages.create(
        model="test/gpt", max_tokens=64, system="Be brief.", stop_sequences=["END"],
        messages=[{"role": "user", "content": "Hello"}],
    )  # fmt: skip

    assert world.last_upstream("/v1/chat/completions")["body"] == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
        "max_tokens": 64,
        "stop": ["END"],
    }


@pytest.mark.parametrize("model", ["test/gpt", "test/claude", "test/gemini"])
def test_streaming_messages_from_any_adapter(world: World, model: str) -> None:
    with client_for(world).messages.stream(
        model=model, max_tokens=300, messages=[{"role": "user", "content": "Describe the sea"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text and final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["test/gpt", "test/claude", "test/gemini"])
def test_tool_use_through_messages(world: World, model: str) -> None:
    client = client_for(world)
    question = {"role": "user", "content": "What is the weather in Madrid?"}

    first = client.messages.create(
        model=model, max_tokens=200, tools=[LOOKUP_TOOL], messages=[question]
    )
    tool_use = next(block for block in first.content if block.type == "tool_use")
    second = client.messages.create(
        model=model, max_tokens=200, tools=[LOOKUP_TOOL],
        messages=[question, {"role": "assistant", "content": first.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]}],
    )  # fmt: skip

    assert first.stop_reason == "tool_use"
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "Madrid"}
    assert "sunny" in second.content[0].text


def test_streamed_tool_use_accumulates_its_input(world: World) -> None:
    with client_for(world).messages.stream(
        model="test/gpt",
        max_tokens=200,
        tools=[LOOKUP_TOOL],
        messages=[{"role": "user", "content": "Weather in Kyiv?"}],
    ) as stream:
        final = stream.get_final_message()

    tool_use = final.content[-1]
    assert tool_use.type == "tool_use" and tool_use.input == {"city": "Kyiv"}
    assert final.stop_reason == "tool_use"


def test_bearer_authorization_also_works_on_messages(world: World) -> None:
    client = anthropic.Anthropic(
        base_url=world.gateway_url, auth_token=world.key, api_key=None, max_retries=0
    )

    message = client.messages.create(
        model="test/gpt", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )

    assert message.content


def test_bad_key_is_an_anthropic_style_authentication_error(world: World) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client_for(world, key="rh-live-not-a-real-key").messages.create(
            model="test/gpt", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )

    body = caught.value.body
    assert isinstance(body, dict)
    assert (
        body["type"] == "error"
        and body["error"]["type"] == "unauthorized"
        and body["error"]["code"] == 401
    )
