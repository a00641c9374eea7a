"""Client usage patterns the other client tests leave out, each through the real SDK: a
streamed answer's usage against the same answer unstreamed, OpenAI's deprecated ``functions``,
tool results of parallel calls, Anthropic system blocks with an image and a forced tool, the
Responses API streaming a function call and continuing it by ``previous_response_id``, and an
openai-agents handoff over Chat Completions."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import openai
import pytest

from routing.fake_upstream.answers import count_tokens
from tests.routing.test_gateway_anthropic_sdk import LOOKUP_TOOL
from tests.routing.test_gateway_openai_sdk import WEATHER_TOOL
from tests.routing.world import World

WEATHER: dict[str, Any] = WEATHER_TOOL["function"]
CLOCK = WEATHER | {"name": "get_time", "description": "Local time in a city"}
# A 1x1 PNG, as the SDKs' image examples send it: base64 inside the request.
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
        "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()
MODELS = ["test/gpt", "test/claude", "test/gemini"]
PROMPT = "Tell me about tea and why people drink it"


@pytest.mark.parametrize("model", MODELS)
def test_a_streamed_answer_counts_and_costs_what_the_same_answer_unstreamed_does(
    world: World, model: str
) -> None:
    """The provider's final count is billed as reported, streamed or not. Before, a finished
    stream was billed the larger of it and a 4-characters-a-token estimate: the same answer
    cost more streamed, and its usage chunk said so."""
    client = world.openai_client()
    messages: Any = [{"role": "user", "content": PROMPT}]

    whole = client.chat.completions.create(model=model, messages=messages)
    chunks = list(
        client.chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )

    streamed_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed_text == whole.choices[0].message.content
    usage, streamed = whole.usage, chunks[-1].usage
    assert usage is not None and streamed is not None
    assert (streamed.prompt_tokens, streamed.completion_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    # The fake's own count (a token a word), not a 4-characters-a-token estimate of both.
    assert usage.completion_tokens == count_tokens(whole.choices[0].message.content or "")
    records = [world.usage_record(chunks[0].id), world.usage_record(whole.id)]
    assert [r.completion_tokens for r in records] == [usage.completion_tokens] * 2
    assert [r.flag_list for r in records] == [[], []]
    assert records[0].cost == records[1].cost


def test_an_anthropic_stream_ends_with_the_count_its_message_has(world: World) -> None:
    client = world.anthropic_client()
    request: Any = {"model": "test/claude", "max_tokens": 300,
                    "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip

    whole = client.messages.create(**request)
    with client.messages.stream(**request) as stream:
        final = stream.get_final_message()

    assert final.content[0].text == whole.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert whole.usage.output_tokens == count_tokens(whole.content[0].text)  # type: ignore[union-attr]
    assert world.usage_record(final.id).flag_list == []


@pytest.mark.parametrize("model", MODELS)
def test_deprecated_functions_are_refused_naming_tools(world: World, model: str) -> None:
    """Before, ``functions`` were dropped: the client got text where it waited for a call."""
    with pytest.raises(openai.BadRequestError) as refused:
        world.openai_client().chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Weather in Oslo?"}],
            functions=[WEATHER],  # type: ignore[list-item]
            function_call="auto",
        )

    assert refused.value.body["param"] == "functions"  # type: ignore[index]
    assert "tools" in refused.value.body["message"]  # type: ignore[index]
    assert world.upstream_requests() == []


def test_results_of_parallel_calls_reach_anthropic_as_one_user_turn(world: World) -> None:
    calls = [
        {"id": f"call_{n}", "type": "function",
         "function": {"name": name, "arguments": '{"city": "Oslo"}'}}
        for n, name in enumerate(("get_weather", "get_time"))
    ]  # fmt: skip
    messages: Any = [
        {"role": "user", "content": "Weather and time in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_0", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
    ]

    answer = world.openai_client().chat.completions.create(
        model="test/claude",
        messages=messages,
        tools=[{"type": "function", "function": WEATHER}, {"type": "function", "function": CLOCK}],
        parallel_tool_calls=False,
    )

    assert answer.choices[0].message.content == "Based on the tool result: noon"
    sent = world.last_upstream("/v1/messages")["body"]
    assert sent["messages"][-1] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_0", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "call_1", "content": "noon"},
    ]}  # fmt: skip
    assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_system_blocks_an_image_and_a_forced_tool_reach_gemini(world: World) -> None:
    message = world.anthropic_client().messages.create(
        model="test/gemini",
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        tools=[LOOKUP_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
                    },
                    {"type": "text", "text": "Which city is this, Rome?"},
                ],
            }
        ],
    )

    assert message.stop_reason == "tool_use"
    assert message.content[-1].input == {"city": "Rome"}  # type: ignore[union-attr]
    sent = world.last_upstream(":generateContent")["body"]
    assert sent["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert sent["contents"][0]["parts"][0] == {
        "inlineData": {"mimeType": "image/png", "data": PIXEL}
    }
    assert sent["toolConfig"]["functionCallingConfig"] == {
        "mode": "ANY",
        "allowedFunctionNames": ["get_weather"],
    }


def test_a_streamed_function_call_continues_by_previous_response_id(world: World) -> None:
    client = world.openai_client()
    tools: Any = [{"type": "function", "strict": True, **WEATHER}]

    with client.responses.stream(model="test/claude", input="Weather in Oslo?", tools=tools,
                                 tool_choice="required") as stream:  # fmt: skip
        kinds = [event.type for event in stream]
        first = stream.get_final_response()
    (call,) = [item for item in first.output if item.type == "function_call"]
    output: Any = [{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    with client.responses.stream(model="test/claude", input=output, tools=tools,
                                 previous_response_id=first.id) as stream:  # fmt: skip
        second = stream.get_final_response()

    assert "response.function_call_arguments.done" in kinds
    assert second.output_text == "Based on the tool result: sunny"
    stored = client.responses.retrieve(second.id)
    assert (stored.previous_response_id, stored.output_text) == (first.id, second.output_text)


def test_an_agents_handoff_over_chat_completions_streamed(world: World) -> None:
    from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=f"{world.gateway_url}/v1", api_key=world.key,
                                max_retries=0)  # fmt: skip
    model = OpenAIChatCompletionsModel(model="test/gemini", openai_client=client)
    expert = Agent(name="Expert", instructions="Answer.", model=model)
    triage = Agent(name="Triage", instructions="Hand off.", model=model, handoffs=[expert])

    async def run() -> Any:
        # The fake calls the tool the prompt names: here the handoff's.
        result = Runner.run_streamed(triage, "transfer_to_expert please")
        async for _ in result.stream_events():
            pass
        return result

    result = asyncio.run(run())

    assert result.last_agent.name == "Expert"
    assert result.final_output == 'Based on the tool result: {"assistant":"Expert"}'
