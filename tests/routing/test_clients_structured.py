"""Structured outputs from nested pydantic models, as real clients send them: each nested model
is a ``$defs`` entry the schema points at with ``$ref``, and an optional one an ``anyOf`` with
null. Every provider's wire format must carry such a schema (Gemini's OpenAPI-subset fields
refuse references: the gateway sends its JSON Schema fields)."""

from __future__ import annotations

import openai
import pytest
from pydantic import BaseModel
from pydantic_ai import Agent

from tests.routing.test_gateway_openai_sdk import client_for
from tests.routing.world import World

MODELS = ["test/gpt", "test/claude", "test/gemini"]


class Street(BaseModel):
    name: str
    length_km: float


class City(BaseModel):
    name: str
    streets: list[Street]
    main_street: Street | None = None


def test_the_schema_of_a_nested_model_has_references() -> None:
    schema = City.model_json_schema()

    assert "$defs" in schema and schema["properties"]["streets"]["items"]["$ref"]


@pytest.mark.parametrize("model", MODELS)
def test_chat_completions_parse_with_a_nested_model(world: World, model: str) -> None:
    completion = client_for(world).chat.completions.parse(
        model=model, response_format=City, messages=[{"role": "user", "content": "Invent a city"}]
    )

    city = completion.choices[0].message.parsed
    assert isinstance(city, City) and city.streets and isinstance(city.streets[0], Street)
    if model == "test/gemini":  # was refused upstream: 'Unknown name "$defs"'
        config = world.last_upstream("generateContent")["body"]["generationConfig"]
        assert config["responseJsonSchema"]["$defs"].keys() == {"Street"}


@pytest.mark.parametrize("model", MODELS)
def test_a_streamed_parse_with_a_nested_model(world: World, model: str) -> None:
    with client_for(world).chat.completions.stream(
        model=model, response_format=City, messages=[{"role": "user", "content": "Invent a city"}]
    ) as stream:
        final = stream.get_final_completion()

    assert isinstance(final.choices[0].message.parsed, City)


@pytest.mark.parametrize("model", MODELS)
def test_a_tool_whose_arguments_are_a_nested_model(world: World, model: str) -> None:
    completion = client_for(world).chat.completions.parse(
        model=model,
        tools=[openai.pydantic_function_tool(City, name="save_city")],
        messages=[{"role": "user", "content": "Use the tool to save a city"}],
    )

    (call,) = completion.choices[0].message.tool_calls or []
    assert isinstance(call.function.parsed_arguments, City)
    if model == "test/gemini":
        declaration = world.last_upstream()["body"]["tools"][0]["functionDeclarations"][0]
        assert "$defs" in declaration["parametersJsonSchema"]


@pytest.mark.parametrize("model", MODELS)
def test_a_pydantic_ai_agent_with_a_nested_output_type(
    world: World, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{world.gateway_url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", world.key)

    result = Agent(f"openai:{model}", output_type=City).run_sync("Invent a city")

    assert isinstance(result.output, City) and isinstance(result.output.streets[0], Street)
