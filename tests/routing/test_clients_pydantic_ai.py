"""pydantic-ai with a plain ``openai:`` model string, configured the way its docs say
(``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``), against the in-process gateway."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent, NativeOutput

from routing.fake_upstream.answers import answer_text
from tests.routing.world import World


class City(BaseModel):
    name: str
    population: int


@pytest.fixture
def openai_env(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{world.gateway_url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", world.key)
    return world


def test_an_openai_model_string_answers(openai_env: World) -> None:
    result = Agent("openai:test/gpt").run_sync("What is 6*7?")

    assert result.output == answer_text("gpt-4o-mini", "What is 6*7?")
    assert result.usage.total_tokens > 0


def test_structured_output_as_a_json_schema(openai_env: World) -> None:
    city = Agent("openai:test/gpt", output_type=NativeOutput(City)).run_sync("Describe a city.")

    assert isinstance(city.output, City) and isinstance(city.output.population, int)
    sent = openai_env.last_upstream("/v1/chat/completions")["body"]
    assert sent["response_format"]["type"] == "json_schema"


def test_a_tool_call_and_its_result(openai_env: World) -> None:
    agent = Agent("openai:test/gpt")
    calls: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return "sunny"

    result = agent.run_sync("What is the weather in Paris?")

    assert len(calls) == 1 and result.output == "Based on the tool result: sunny"


def test_run_stream_text_and_structured(openai_env: World) -> None:
    import asyncio

    async def streamed() -> tuple[list[str], object]:
        async with Agent("openai:test/claude").run_stream("Tell me about tea") as run:
            texts = [text async for text in run.stream_text()]
        async with Agent("openai:test/gemini", output_type=City).run_stream("A city") as typed:
            city = await typed.get_output()
        return texts, city

    texts, city = asyncio.run(streamed())

    assert texts[-1] == answer_text("claude-sonnet-4-5", "Tell me about tea")
    assert isinstance(city, City)
