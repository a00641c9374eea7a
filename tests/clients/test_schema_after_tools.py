"""A schema asked for is followed after a tool result too, as a real model follows it: client
flows that call a tool and then want typed output (pydantic-ai ``output_type`` with tools, run
and streamed; openai ``responses.stream(text_format=...)`` after a ``function_call_output``;
langchain ``with_structured_output`` after a tool message) get a valid instance, not prose."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel
from pydantic_ai import Agent

from tests.routing.world import World


class Forecast(BaseModel):
    city: str
    temperature: int
    sunny: bool


@pytest.fixture
def sdk_env(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{world.gateway_url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", world.key)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", world.gateway_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", world.key)
    return world


def forecast_agent(model: str, calls: list[str]) -> Agent[None, Forecast]:
    agent = Agent(model, output_type=Forecast)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return "sunny, 21 C"

    return agent


@pytest.mark.parametrize("model", ["openai:test/gpt", "anthropic:test/claude"])
def test_an_agent_with_a_tool_and_an_output_type_runs(sdk_env: World, model: str) -> None:
    calls: list[str] = []

    result = forecast_agent(model, calls).run_sync("What is the weather in Paris?")

    assert calls and isinstance(result.output, Forecast)


@pytest.mark.parametrize("model", ["openai:test/gpt", "anthropic:test/claude"])
def test_an_agent_with_a_tool_and_an_output_type_streams(sdk_env: World, model: str) -> None:
    calls: list[str] = []

    async def streamed() -> Forecast:
        agent = forecast_agent(model, calls)
        async with agent.run_stream("What is the weather in Paris?") as run:
            return await run.get_output()

    assert isinstance(asyncio.run(streamed()), Forecast) and calls


def test_a_responses_stream_with_a_text_format_after_a_function_call_output(
    world: World,
) -> None:
    tool = {
        "type": "function", "name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"], "additionalProperties": False},
    }  # fmt: skip
    client = world.openai_client()
    first = client.responses.create(
        model="test/gpt", tools=[tool], input="What is the weather in Paris?"
    )
    (call,) = [item for item in first.output if item.type == "function_call"]

    with client.responses.stream(
        model="test/gpt", tools=[tool], text_format=Forecast,
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name,
             "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"},
        ],
    ) as stream:  # fmt: skip
        final = stream.get_final_response()

    assert isinstance(final.output_parsed, Forecast)


def test_langchain_structured_output_after_a_tool_message(world: World) -> None:
    chat = ChatOpenAI(model="test/claude", base_url=f"{world.gateway_url}/v1", api_key=world.key,
                      max_retries=0)  # type: ignore[arg-type]  # fmt: skip
    history = [
        HumanMessage("What is the weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
        ToolMessage("sunny, 21 C", tool_call_id="c1"),
    ]

    forecast = chat.with_structured_output(Forecast, method="json_schema").invoke(history)
    streamed = list(chat.with_structured_output(Forecast, method="json_schema").stream(history))

    assert isinstance(forecast, Forecast) and isinstance(streamed[-1], Forecast)


@pytest.mark.parametrize("model", ["test/gpt", "test/claude", "test/gemini"])
def test_chat_parse_after_a_tool_message_on_every_wire_format(world: World, model: str) -> None:
    messages: list = [  # type: ignore[type-arg]
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21 C"},
    ]  # fmt: skip
    chat = world.openai_client().chat.completions
    whole = chat.parse(model=model, response_format=Forecast, messages=messages)
    with chat.stream(model=model, response_format=Forecast, messages=messages) as stream:
        streamed = stream.get_final_completion()

    assert isinstance(whole.choices[0].message.parsed, Forecast)
    assert isinstance(streamed.choices[0].message.parsed, Forecast)
