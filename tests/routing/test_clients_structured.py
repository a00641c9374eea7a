"""Structured outputs from nested pydantic models, as real clients send them: each nested model
is a ``$defs`` entry the schema points at with ``$ref``, and an optional one an ``anyOf`` with
null. Every provider's wire format must carry such a schema (Gemini's OpenAPI-subset fields
refuse references: the gateway sends its JSON Schema fields)."""

from __future__ import annotations

import openai
import orjson
import pytest
from pydantic import BaseModel, Field
from pydantic_ai import Agent

from tests.routing.world import World

MODELS = ["test/gpt", "test/claude", "test/gemini"]


class Street(BaseModel):
    name: str
    length_km: float


class City(BaseModel):
    name: str
    streets: list[Street]
    main_street: Street | None = None


class Town(BaseModel):
    name: str
    main_street: Street = Field(
        description="The busiest street", examples=[{"name": "High Street", "length_km": 1.2}]
    )


def test_the_schema_of_a_nested_model_has_references() -> None:
    schema = City.model_json_schema()

    assert "$defs" in schema and schema["properties"]["streets"]["items"]["$ref"]


@pytest.mark.parametrize("model", MODELS)
def test_chat_completions_parse_with_a_nested_model(world: World, model: str) -> None:
    completion = world.openai_client().chat.completions.parse(
        model=model, response_format=City, messages=[{"role": "user", "content": "Invent a city"}]
    )

    city = completion.choices[0].message.parsed
    assert isinstance(city, City) and city.streets and isinstance(city.streets[0], Street)
    if model == "test/gemini":  # was refused upstream: 'Unknown name "$defs"'
        config = world.last_upstream("generateContent")["body"]["generationConfig"]
        assert config["responseJsonSchema"]["$defs"].keys() == {"Street"}


@pytest.mark.parametrize("model", MODELS)
def test_a_streamed_parse_with_a_nested_model(world: World, model: str) -> None:
    with world.openai_client().chat.completions.stream(
        model=model, response_format=City, messages=[{"role": "user", "content": "Invent a city"}]
    ) as stream:
        final = stream.get_final_completion()

    assert isinstance(final.choices[0].message.parsed, City)


@pytest.mark.parametrize("model", MODELS)
def test_a_tool_whose_arguments_are_a_nested_model(world: World, model: str) -> None:
    completion = world.openai_client().chat.completions.parse(
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


def test_a_raw_pydantic_schema_with_a_described_nested_model(world: World) -> None:
    schema = Town.model_json_schema()  # as sent without the SDK's strict rewrite
    assert set(schema["properties"]["main_street"]) == {"$ref", "description", "examples"}
    client, ask = world.openai_client(), [{"role": "user", "content": "Invent a town"}]

    completion = client.chat.completions.create(
        model="test/gemini", messages=ask,
        response_format={"type": "json_schema", "json_schema": {"name": "town", "schema": schema}},
    )  # fmt: skip
    called = client.chat.completions.create(
        model="test/gemini", messages=[{"role": "user", "content": "Use the tool to save a town"}],
        tools=[{"type": "function", "function": {"name": "save_town", "parameters": schema}}],
    )  # fmt: skip

    # were refused upstream: "Schema.ref 'Street' was set alongside unsupported fields"
    Town.model_validate_json(completion.choices[0].message.content or "")
    (call,) = called.choices[0].message.tool_calls or []
    Town.model_validate_json(call.function.arguments)  # type: ignore[union-attr]
    sent = world.last_upstream()["body"]["tools"][0]["functionDeclarations"][0]
    main_street = sent["parametersJsonSchema"]["properties"]["main_street"]
    assert main_street["anyOf"] == [{"$ref": "#/$defs/Street"}]
    assert main_street["description"] == "The busiest street"


def test_draft_07_definitions_and_nullable_reach_gemini_as_json_schema(world: World) -> None:
    street = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    schema = {"type": "object", "definitions": {"Street": street},
              "properties": {"street": {"$ref": "#/definitions/Street"},
                             "note": {"type": "string", "nullable": True}},
              "required": ["street", "note"]}  # fmt: skip

    completion = world.openai_client().chat.completions.create(
        model="test/gemini", messages=[{"role": "user", "content": "Invent a street"}],
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    )  # fmt: skip

    assert orjson.loads(completion.choices[0].message.content or "")["street"]["name"]
    sent = world.last_upstream("generateContent")["body"]["generationConfig"]
    assert sent["responseJsonSchema"] == {"type": "object", "$defs": {"Street": street},
        "properties": {"street": {"$ref": "#/$defs/Street"},
                       "note": {"type": ["string", "null"]}},
        "required": ["street", "note"]}  # fmt: skip
