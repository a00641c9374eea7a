"""Client usage patterns no other client test tries, each through the real SDK: OpenAI's
``responses.input_tokens.count``, raw responses' headers, the chat ``stream()`` helper with a
pydantic tool and a response format (async too), Responses ``parse`` then a forced tool
continued by ``previous_response_id`` and streamed, Anthropic ``tool_choice`` variants, a
streamed tool use continued, thinking with tools, the beta resource and its tool runner,
langchain's structured output methods, litellm's usage chunk and async tools, pydantic-ai on
``AnthropicModel`` and ``OpenAIResponsesModel``, openai-agents on Chat Completions, and an
``allowed_tools`` tool choice on chat and Responses."""

from __future__ import annotations

import asyncio
import os
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported

import litellm
import openai
import pytest
from pydantic import BaseModel

from tests.routing.test_gateway_anthropic_sdk import LOOKUP_TOOL
from tests.routing.test_gateway_openai_sdk import WEATHER_TOOL
from tests.routing.world import World

litellm.telemetry = False
MODELS = ["test/gpt", "test/claude", "test/gemini"]
WEATHER: Any = WEATHER_TOOL
FLAT_WEATHER: Any = {"type": "function", **WEATHER_TOOL["function"]}


class City(BaseModel):
    name: str
    population: int


class GetWeather(BaseModel):
    city: str


def test_the_openai_sdk_counts_a_responses_input_with_its_stored_turns(world: World) -> None:
    """``POST /v1/responses/input_tokens`` was a 405 (read as a stored response's id)."""
    client = world.openai_client()
    stored = client.responses.create(model="test/gpt", input="Tell me about tea")
    sent = len(world.upstream_requests())

    raw = client.responses.input_tokens.with_raw_response.count(model="test/gpt", input="Hi there")
    alone, counted = raw.parse(), client.responses.input_tokens.count
    with_tools = counted(model="test/gpt", input="Hi there", tools=[FLAT_WEATHER])
    continued = counted(model="gpt", input="Hi there", previous_response_id=stored.id)

    assert alone.object == "response.input_tokens" and alone.input_tokens > 0
    assert raw.headers["x-routerhub-token-count"] == "estimate"
    assert with_tools.input_tokens > alone.input_tokens
    assert continued.input_tokens > alone.input_tokens
    with pytest.raises(openai.NotFoundError):
        counted(model="test/unknown", input="Hi there")
    assert len(world.upstream_requests()) == sent  # nothing was sent upstream


def test_raw_responses_carry_the_request_id_on_both_sdks(world: World) -> None:
    chat = world.openai_client().chat.completions.with_raw_response.create(
        model="test/gpt", messages=[{"role": "user", "content": "Hi"}]
    )
    message = world.anthropic_client().messages.with_raw_response.create(
        model="test/claude", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
    )

    assert chat.headers["x-request-id"] and chat.parse().id.startswith("gen-")
    assert message.headers["request-id"] == message.parse()._request_id


@pytest.mark.parametrize("model", MODELS)
def test_the_chat_stream_helper_parses_a_pydantic_tool_and_a_format(
    world: World, model: str
) -> None:
    chat = world.openai_client().chat.completions
    tools = [openai.pydantic_function_tool(GetWeather)]
    ask: Any = [{"role": "user", "content": "Weather in Oslo?"}]
    with chat.stream(model=model, messages=ask, tools=tools) as stream:
        call = stream.get_final_completion().choices[0].message.tool_calls[0]  # type: ignore[index]
    city: Any = [{"role": "user", "content": "A city"}]
    with chat.stream(model=model, messages=city, response_format=City) as stream:
        events = [event.type for event in stream]
        parsed = stream.get_final_completion().choices[0].message.parsed

    assert call.function.parsed_arguments == GetWeather(city="Oslo")
    assert isinstance(parsed, City) and "content.done" in events


@pytest.mark.parametrize("model", MODELS)
def test_responses_parse_then_a_forced_tool_continued_and_streamed(
    world: World, model: str
) -> None:
    client = world.openai_client()
    city = client.responses.parse(model=model, input="A city", text_format=City,
                                  instructions="Be brief.", max_output_tokens=300)  # fmt: skip
    called = client.responses.create(
        model=model, input="And now?", previous_response_id=city.id, tools=[FLAT_WEATHER],
        tool_choice="required", parallel_tool_calls=False, truncation="auto", max_tool_calls=3,
        include=["reasoning.encrypted_content"], prompt_cache_key="k", safety_identifier="s",
    )  # fmt: skip
    call = next(item for item in called.output if item.type == "function_call")
    answer: Any = [{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    with client.responses.stream(model=model, previous_response_id=called.id, input=answer) as s:
        final = s.get_final_response()

    assert isinstance(city.output_parsed, City) and call.name == "get_weather"
    # Gemini's function response is an object: the fake echoes it as JSON.
    assert final.output_text.startswith("Based on the tool result: ")
    assert "sunny" in final.output_text


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_tool_choice_variants_reach_every_provider(world: World, model: str) -> None:
    create = world.anthropic_client().messages.create
    ask: Any = {"model": model, "max_tokens": 200, "tools": [LOOKUP_TOOL],
                "messages": [{"role": "user", "content": "Hello"}]}  # fmt: skip
    forced = [
        create(**ask, tool_choice=choice).stop_reason
        for choice in ({"type": "any"}, {"type": "tool", "name": LOOKUP_TOOL["name"]},
                       {"type": "any", "disable_parallel_tool_use": True})
    ]  # fmt: skip
    lookup = ask | {"messages": [{"role": "user", "content": "Look up the order"}]}

    assert forced == ["tool_use"] * 3
    assert create(**lookup, tool_choice={"type": "none"}).stop_reason == "end_turn"


@pytest.mark.parametrize("model", MODELS)
def test_an_anthropic_streamed_tool_use_continues_with_a_tool_result(
    world: World, model: str
) -> None:
    client = world.anthropic_client()
    ask: Any = {"model": model, "max_tokens": 200, "tools": [LOOKUP_TOOL], "stop_sequences": ["##"],
                "system": [{"type": "text", "text": "Be brief."}], "metadata": {"user_id": "u1"}}  # fmt: skip
    first: Any = {"role": "user", "content": "Look up the order"}
    with client.messages.stream(**ask, messages=[first]) as stream:
        used = stream.get_final_message()
    call = used.content[-1]
    result: Any = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,  # type: ignore[union-attr]
                   "content": [{"type": "text", "text": "shipped"}]}]}  # fmt: skip
    answer = client.messages.create(
        **ask, messages=[first, {"role": "assistant", "content": used.content}, result]
    )

    assert used.stop_reason == "tool_use" and call.type == "tool_use"
    assert answer.content[0].text.startswith("Based on the tool result: ")  # type: ignore[union-attr]
    assert "shipped" in answer.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("model", MODELS)
def test_langchain_structured_output_by_json_schema_and_function_calling(
    world: World, model: str
) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model=model, base_url=f"{world.gateway_url}/v1", api_key=world.key,  # type: ignore[arg-type]
                      max_retries=0, stream_usage=True)  # fmt: skip
    schema = chat.with_structured_output(City, method="json_schema", strict=True, include_raw=True)
    tools = chat.with_structured_output(City, method="function_calling")
    whole = schema.invoke("Invent a city")
    streamed = list(tools.stream("Invent a city"))

    assert isinstance(whole["parsed"], City)  # type: ignore[index,call-overload]
    assert whole["raw"].usage_metadata["total_tokens"] > 0  # type: ignore[index,call-overload]
    assert isinstance(streamed[-1], City)


def test_litellm_streams_the_usage_chunk_and_calls_a_tool_async(world: World) -> None:
    ask: Any = {"api_base": f"{world.gateway_url}/v1", "api_key": world.key}
    chunks = list(litellm.completion(model="openai/test/claude", stream=True,
                                     stream_options={"include_usage": True},
                                     messages=[{"role": "user", "content": "Hi"}], **ask))  # fmt: skip
    called = asyncio.run(litellm.acompletion(model="openai/test/gemini", tools=[WEATHER],
                                             tool_choice="required", **ask,
                                             messages=[{"role": "user", "content": "Paris?"}]))  # fmt: skip

    usage = [getattr(chunk, "usage", None) for chunk in chunks]
    assert any(u is not None and u.total_tokens > 0 for u in usage)
    assert called.choices[0].message.tool_calls[0].function.name == "get_weather"  # type: ignore[union-attr]


def test_pydantic_ai_on_the_anthropic_and_the_responses_models(world: World) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.providers.anthropic import AnthropicProvider
    from pydantic_ai.providers.openai import OpenAIProvider

    claude = AnthropicModel("test/claude", provider=AnthropicProvider(
        base_url=world.gateway_url, api_key=world.key))  # fmt: skip
    responses = OpenAIResponsesModel("test/gemini", provider=OpenAIProvider(
        base_url=f"{world.gateway_url}/v1", api_key=world.key))  # fmt: skip

    async def streamed(agent: Agent[None, City]) -> City:
        async with agent.run_stream("Invent a city") as run:
            return await run.get_output()

    for model in (claude, responses):
        agent = Agent(model, output_type=City)
        assert isinstance(agent.run_sync("Invent a city").output, City)
        assert isinstance(asyncio.run(streamed(agent)), City)


def test_anthropic_beta_messages_and_the_tool_runner(world: World) -> None:
    """The SDK's beta resource posts to ``/v1/messages?beta=true`` with ``anthropic-beta``."""
    from anthropic import beta_tool

    @beta_tool
    def get_weather(city: str) -> str:
        """Weather in a city.

        Args:
            city: the city
        """
        return f"sunny in {city}"

    beta = world.anthropic_client().beta.messages
    plain = beta.create(model="test/gpt", max_tokens=100, betas=["token-efficient-tools-2025-02-19"],
                        messages=[{"role": "user", "content": "Hi"}])  # fmt: skip
    runner = beta.tool_runner(model="test/claude", max_tokens=200, tools=[get_weather],
                              messages=[{"role": "user", "content": "Weather in Paris?"}])  # fmt: skip
    turns = list(runner)
    with beta.stream(model="test/gemini", max_tokens=100,
                     messages=[{"role": "user", "content": "Hi"}]) as stream:  # fmt: skip
        text = stream.get_final_text()

    assert plain.content and text
    assert turns[0].stop_reason == "tool_use" and "sunny in Paris" in str(turns[-1].content)


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_thinking_with_tools_and_its_count(world: World, model: str) -> None:
    client = world.anthropic_client()
    ask: Any = {"model": model, "thinking": {"type": "enabled", "budget_tokens": 1024},
                "tools": [LOOKUP_TOOL], "messages": [{"role": "user", "content": "Look up the order"}]}  # fmt: skip
    used = client.messages.create(**ask, max_tokens=2000)
    system: Any = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    counted = client.messages.count_tokens(**ask, tool_choice={"type": "any"}, system=system)

    assert used.stop_reason == "tool_use" and counted.input_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_an_openai_client_of_an_organization_and_project_streams_without_obfuscation(
    world: World, model: str
) -> None:
    client = openai.OpenAI(base_url=f"{world.gateway_url}/v1", api_key=world.key, max_retries=0,
                           organization="org-abc", project="proj_x",
                           default_headers={"HTTP-Referer": "https://example.com", "X-Title": "x"})  # fmt: skip
    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi", "name": "bob"}], stream=True,
        stream_options={"include_usage": True, "include_obfuscation": False},
        prompt_cache_retention="24h",
    ))  # fmt: skip
    with client.responses.stream(model=model, input="Hi",
                                 stream_options={"include_obfuscation": False}) as stream:  # fmt: skip
        response = stream.get_final_response()

    assert chunks[-1].usage is not None and response.output_text


def test_async_stream_helpers_parse_and_the_model_list(world: World) -> None:
    class Town(BaseModel):
        name: str

    async def run() -> tuple[Any, Any, Any, list[str]]:
        client = openai.AsyncOpenAI(base_url=f"{world.gateway_url}/v1", api_key=world.key,
                                    max_retries=0)  # fmt: skip
        ask: Any = [{"role": "user", "content": "A town"}]
        async with client.chat.completions.stream(model="test/claude", messages=ask,
                                                  response_format=Town) as chat:  # fmt: skip
            streamed = await chat.get_final_completion()
        async with client.responses.stream(model="test/gemini", input="A town",
                                           text_format=Town) as responses:  # fmt: skip
            response = await responses.get_final_response()
        parsed = await client.chat.completions.parse(model="test/gpt", messages=ask,
                                                     response_format=Town)  # fmt: skip
        return streamed, response, parsed, [m.id async for m in client.models.list()]

    streamed, response, parsed, models = asyncio.run(run())

    assert isinstance(streamed.choices[0].message.parsed, Town)
    assert isinstance(response.output_parsed, Town)
    assert isinstance(parsed.choices[0].message.parsed, Town) and "test/gpt" in models


def test_openai_agents_on_chat_completions_call_a_tool_and_stream_a_typed_output(
    world: World,
) -> None:
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    async def run(model: str) -> tuple[str, Any]:
        client = openai.AsyncOpenAI(base_url=f"{world.gateway_url}/v1", api_key=world.key,
                                    max_retries=0)  # fmt: skip
        chat = OpenAIChatCompletionsModel(model=model, openai_client=client)
        tools = Agent(name="weather", instructions="Answer.", model=chat, tools=[get_weather])
        typed = Agent(name="cities", instructions="Answer.", model=chat, output_type=City)
        answered = await Runner.run(tools, "What is the weather in Paris?")
        streamed = Runner.run_streamed(typed, "Invent a city")
        async for _ in streamed.stream_events():
            pass
        return answered.final_output, streamed.final_output

    for model in MODELS:
        answer, city = asyncio.run(run(model))
        assert "sunny in Paris" in answer and isinstance(city, City)


@pytest.mark.parametrize("model", MODELS)
def test_an_allowed_tools_choice_narrows_the_tools_on_chat_and_responses(
    world: World, model: str
) -> None:
    """OpenAI's ``allowed_tools`` choice was a 400 on both APIs (``tool_choice must be…``)."""
    client = world.openai_client()
    clock: Any = {"type": "function", "function": WEATHER["function"] | {"name": "get_time"}}
    allowed: Any = {"type": "allowed_tools", "allowed_tools": {"mode": "required",
                    "tools": [{"type": "function", "function": {"name": "get_time"}}]}}  # fmt: skip
    hello: Any = [{"role": "user", "content": "Hello"}]
    chat = client.chat.completions.create(model=model, messages=hello, tools=[WEATHER, clock],
                                          tool_choice=allowed)  # fmt: skip
    sent = world.last_upstream()["body"]
    flat: Any = {"type": "function", **clock["function"]}
    response = client.responses.create(model=model, input="Hello", tools=[FLAT_WEATHER, flat],
        tool_choice={"type": "allowed_tools", "mode": "required",
                     "tools": [{"type": "function", "name": "get_time"}]})  # fmt: skip

    assert chat.choices[0].message.tool_calls[0].function.name == "get_time"  # type: ignore[index,union-attr]
    assert "get_weather" not in str(sent) and "get_time" in str(sent)
    assert [item.name for item in response.output] == ["get_time"]  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=model, messages=hello, tools=[WEATHER],
                                       tool_choice=allowed)  # fmt: skip
    assert refused.value.body["param"] == "tool_choice"  # type: ignore[index]
