"""openai-agents with its default model (the Responses API) against the in-process gateway:
the client set with ``set_default_openai_client``, tracing disabled (nothing is exported).
A model id with a slash needs the ``openai/`` prefix: the SDK's default provider reads the part
before the first slash as a provider name."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled

from routing.fake_upstream.answers import answer_text
from tests.routing.world import World


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.fixture
def agents_client(world: World) -> Iterator[World]:
    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=f"{world.gateway_url}/v1", api_key=world.key,
                                max_retries=0)  # fmt: skip
    set_default_openai_client(client, use_for_tracing=False)
    yield world


def test_an_agent_answers_through_the_responses_api(agents_client: World) -> None:
    agent = Agent(name="Brief", instructions="Answer briefly.", model="openai/test/gpt")
    result = Runner.run_sync(agent, "What is 6*7?")

    assert result.final_output == answer_text("gpt-4o-mini", "What is 6*7?")
    assert agents_client.upstream_requests("/v1/chat/completions")


def test_an_agent_calls_a_tool_and_continues(agents_client: World) -> None:
    agent = Agent(
        name="Weather", instructions="Use tools.", model="openai/test/gpt", tools=[get_weather]
    )
    result = Runner.run_sync(agent, "What is the weather in Paris?")

    assert result.final_output.startswith("Based on the tool result: sunny in")


def test_an_agent_continues_a_stored_response(agents_client: World) -> None:
    agent = Agent(name="Brief", instructions="Answer briefly.", model="openai/test/gpt")
    first = Runner.run_sync(agent, "My name is Ada.")
    Runner.run_sync(agent, "What is my name?", previous_response_id=first.last_response_id)

    sent = agents_client.last_upstream("/v1/chat/completions")["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]


def test_a_streamed_run_calls_a_tool_and_a_typed_output(agents_client: World) -> None:
    import asyncio

    from pydantic import BaseModel

    class Forecast(BaseModel):
        city: str
        degrees: int

    agent = Agent(
        name="Weather", instructions="Use tools.", model="openai/test/claude", tools=[get_weather]
    )
    typed = Agent(name="Typed", instructions="Forecast.", model="openai/test/gemini",
                  output_type=Forecast)  # fmt: skip

    async def runs() -> tuple[object, list[str], object]:  # one event loop: one client's
        run = Runner.run_streamed(agent, "What is the weather in Paris?")
        kinds = [event.type async for event in run.stream_events()]
        forecast = await Runner.run(typed, "Forecast for Paris")
        return run.final_output, kinds, forecast.final_output

    final, kinds, forecast = asyncio.run(runs())

    assert isinstance(final, str) and final.startswith("Based on the tool result: sunny in")
    assert {"raw_response_event", "run_item_stream_event"} <= set(kinds)
    assert isinstance(forecast, Forecast)
