"""The official ``openai`` SDK against the gateway, through each adapter to the fake upstream."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import openai
import orjson
import pytest

from routing.fake_upstream.answers import answer_text
from tests.routing.world import World

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_completion_through_openai_compatible_upstream_reports_model_provider_and_cost(
    world: World,
) -> None:
    client = world.openai_client()

    completion = client.chat.completions.create(
        model="test/gpt",
        messages=[{"role": "user", "content": "What is 6*7?"}],
        max_tokens=50,
        temperature=0.1,
    )

    assert completion.id.startswith("gen-")
    assert completion.model == "test/gpt"
    assert completion.model_extra["provider"] == "fake-openai"
    assert completion.choices[0].message.content == answer_text("gpt-4o-mini", "What is 6*7?")
    usage = completion.usage
    assert usage is not None
    assert usage.model_extra["cost"] == pytest.approx(
        (usage.prompt_tokens * 1 + usage.completion_tokens * 2) / 1e6
    )
    sent = world.last_upstream("/v1/chat/completions")
    assert sent["body"] == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is 6*7?"}],
                            "max_tokens": 50, "temperature": 0.1}  # fmt: skip
    assert sent["headers"]["authorization"] == "***0001"
    record = world.usage_record(completion.id)
    assert (record.status, record.model, record.provider, record.streamed) == (
        "succeeded",
        "test/gpt",
        "fake-openai",
        False,
    )
    assert record.cost == Decimal(str(usage.model_extra["cost"]))


def test_streaming_ends_with_a_usage_chunk_holding_cost_when_asked(world: World) -> None:
    client = world.openai_client()

    chunks = list(
        client.chat.completions.create(
            model="test/gpt",
            messages=[{"role": "user", "content": "Tell me about tea"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer_text("gpt-4o-mini", "Tell me about tea")
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.model_extra["cost"] > 0
    assert all(c.id == chunks[0].id for c in chunks)
    sent = world.last_upstream("/v1/chat/completions")["body"]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    record = world.usage_record(chunks[0].id)
    assert record.streamed and record.completion_tokens == chunks[-1].usage.completion_tokens


def test_async_client_streams_from_an_anthropic_upstream(world: World) -> None:
    async def run() -> list[openai.types.chat.ChatCompletionChunk]:
        client = openai.AsyncOpenAI(
            base_url=f"{world.gateway_url}/v1", api_key=world.key, max_retries=0
        )
        stream = await client.chat.completions.create(
            model="test/claude",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Explain rain"},
            ],
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=300,
        )
        return [chunk async for chunk in stream]

    chunks = asyncio.run(run())

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer_text("claude-sonnet-4-5", "Explain rain")
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["stop"]
    sent = world.last_upstream("/v1/messages")
    assert sent["headers"]["x-api-key"] == "***0002"
    assert sent["body"] == {"model": "claude-sonnet-4-5", "max_tokens": 300, "system": "Be brief.", "stream": True,
                            "messages": [{"role": "user", "content": [{"type": "text", "text": "Explain rain"}]}]}  # fmt: skip


def test_async_client_non_streaming_through_gemini(world: World) -> None:
    async def run() -> openai.types.chat.ChatCompletion:
        client = openai.AsyncOpenAI(
            base_url=f"{world.gateway_url}/v1", api_key=world.key, max_retries=0
        )
        return await client.chat.completions.create(
            model="test/gemini", messages=[{"role": "user", "content": "Hi there"}]
        )

    completion = asyncio.run(run())

    assert completion.choices[0].message.content == answer_text("gemini-2.5-flash", "Hi there")
    sent = world.last_upstream(":generateContent")
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent["headers"]["x-goog-api-key"] == "***0003"
    assert sent["body"]["contents"] == [{"role": "user", "parts": [{"text": "Hi there"}]}]
    assert sent["body"]["generationConfig"] == {"maxOutputTokens": 4096}


@pytest.mark.parametrize("model", ["test/gpt", "test/claude", "test/gemini"])
def test_tool_call_and_tool_result_round_trip(world: World, model: str) -> None:
    client = world.openai_client()
    question = {"role": "user", "content": "What is the weather in Lisbon?"}

    first = client.chat.completions.create(model=model, messages=[question], tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    second = client.chat.completions.create(
        model=model,
        messages=[question, first.choices[0].message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 19}'}],
        tools=[WEATHER_TOOL],
    )  # fmt: skip

    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == {"city": "Lisbon"}
    assert "temp_c" in (second.choices[0].message.content or "")


def test_tool_result_reaches_anthropic_as_a_tool_result_block(world: World) -> None:
    client = world.openai_client()
    call = {
        "id": "toolu_abc",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
    }

    client.chat.completions.create(
        model="test/claude",
        messages=[{"role": "user", "content": "Weather in Oslo?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
                  {"role": "tool", "tool_call_id": "toolu_abc", "content": "cold"}],
        tools=[WEATHER_TOOL], tool_choice="auto",
    )  # fmt: skip

    sent = world.last_upstream("/v1/messages")["body"]
    assert sent["messages"][1] == {
        "role": "assistant",
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_abc",
                "name": "get_weather",
                "input": {"city": "Oslo"},
            }
        ],
    }
    assert sent["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_abc", "content": "cold"}],
    }
    assert sent["tool_choice"] == {"type": "auto"}


def test_streamed_tool_call_from_gemini_arrives_whole(world: World) -> None:
    client = world.openai_client()

    chunks = list(client.chat.completions.create(model="test/gemini", messages=[{"role": "user", "content": "Weather in Rome?"}],
                                                 tools=[WEATHER_TOOL], stream=True))  # fmt: skip

    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].function.name == "get_weather"
    assert orjson.loads("".join(tc.function.arguments or "" for tc in calls)) == {"city": "Rome"}
    assert world.last_upstream(":streamGenerateContent")["query"] == "alt=sse"


@pytest.mark.parametrize("model", ["test/gpt", "test/claude", "test/gemini"])
def test_json_mode_returns_valid_json(world: World, model: str) -> None:
    client = world.openai_client()

    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Describe a cat as JSON"}],
        response_format={"type": "json_object"},
    )

    assert isinstance(orjson.loads(completion.choices[0].message.content or ""), dict)


def test_json_schema_through_anthropic_is_answered_with_the_schema(world: World) -> None:
    client = world.openai_client()
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }

    completion = client.chat.completions.create(
        model="test/claude", messages=[{"role": "user", "content": "Invent a person"}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )  # fmt: skip

    answer = orjson.loads(completion.choices[0].message.content or "")
    assert set(answer) == {"name", "age"} and isinstance(answer["age"], int)
    sent = world.last_upstream("/v1/messages")["body"]
    assert sent["tool_choice"] == {"type": "tool", "name": "json_response"}


def test_images_reach_gemini_inline_and_anthropic_as_url_sources(world: World) -> None:
    client = world.openai_client()
    content = [{"type": "text", "text": "What is in the picture?"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
               {"type": "image_url", "image_url": {"url": "https://images.example/dog.png"}}]  # fmt: skip

    client.chat.completions.create(
        model="test/gemini", messages=[{"role": "user", "content": content}]
    )
    client.chat.completions.create(
        model="test/claude", messages=[{"role": "user", "content": content}]
    )

    gemini_parts = world.last_upstream(":generateContent")["body"]["contents"][0]["parts"]
    assert gemini_parts[1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    assert gemini_parts[2] == {
        "fileData": {"mimeType": "image/png", "fileUri": "https://images.example/dog.png"}
    }
    anthropic_blocks = world.last_upstream("/v1/messages")["body"]["messages"][0]["content"]
    assert anthropic_blocks[2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://images.example/dog.png"},
    }


def test_gemini_thinking_tokens_are_billed_as_completion_tokens(world: World) -> None:
    client = world.openai_client()

    completion = client.chat.completions.create(
        model="test/gemini-pro", messages=[{"role": "user", "content": "Think"}]
    )

    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 9
    visible = len(answer_text("gemini-2.5-pro", "Think").split())
    assert usage.completion_tokens > visible
    assert usage.model_extra["cost"] == pytest.approx(
        (usage.prompt_tokens * 1.25 + usage.completion_tokens * 10) / 1e6
    )


def test_requested_max_tokens_is_clamped_to_the_endpoint_maximum(world: World) -> None:
    client = world.openai_client()

    client.chat.completions.create(
        model="test/gpt", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=10**6
    )

    assert world.last_upstream("/v1/chat/completions")["body"]["max_tokens"] == 8192
