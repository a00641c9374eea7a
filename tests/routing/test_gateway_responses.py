"""``POST /v1/responses`` (OpenAI's Responses API) with the official openai SDK: a chat request
underneath, answered in the Responses shape and event stream."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from billing.models import LedgerEntry, Reservation, UsageRecord
from routing.fake_upstream.answers import answer_text
from tests.routing.world import World, endpoint, model

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}  # fmt: skip


def generation_of(response_id: str) -> str:
    return response_id.removeprefix("resp_")


def test_sdk_response_from_a_string_is_billed_exactly_as_chat(world: World) -> None:
    response = world.openai_client().responses.create(
        model="test/gpt", input="What is 6*7?", max_output_tokens=50, temperature=0.1
    )

    assert response.object == "response" and response.id.startswith("resp_gen-")
    assert response.status == "completed" and response.model == "test/gpt"
    assert response.output_text == answer_text("gpt-4o-mini", "What is 6*7?")
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    sent = world.last_upstream("/v1/chat/completions")["body"]
    assert sent == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is 6*7?"}],
                    "max_tokens": 50, "temperature": 0.1}  # fmt: skip
    usage = response.usage
    assert usage is not None and usage.total_tokens == usage.input_tokens + usage.output_tokens
    record = world.usage_record(generation_of(response.id))
    assert (record.status, record.prompt_tokens, record.completion_tokens) == (
        "succeeded", usage.input_tokens, usage.output_tokens,
    )  # fmt: skip
    assert record.cost == Decimal(usage.input_tokens * 1 + usage.output_tokens * 2) / 1_000_000
    assert Decimal(str(usage.model_extra["cost"])) == record.cost
    assert (
        LedgerEntry.objects.get(idempotency_key=f"usage:{record.generation_id}").amount
        == -record.cost
    )


def test_instructions_and_input_items_become_chat_messages(world: World) -> None:
    response = world.openai_client().responses.create(
        model="test/claude",
        instructions="Answer briefly.",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
            {"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": "Hello!"}]},
            {"role": "developer", "content": "Be kind."},
            {"role": "user", "content": "Tell me about tea"},
        ],
        reasoning={"effort": "low"},
    )  # fmt: skip

    assert response.output_text == answer_text("claude-sonnet-4-5", "Tell me about tea")
    sent = world.last_upstream("/v1/messages")["body"]
    assert "Answer briefly." in json.dumps(sent["system"]) and "Be kind." in json.dumps(
        sent["system"]
    )
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert response.model_extra["provider"] == "fake-anthropic"


def test_function_tool_round_trip(world: World) -> None:
    client = world.openai_client()
    first = client.responses.create(
        model="test/gpt", input="What is the weather in Paris?", tools=[WEATHER_TOOL],
        tool_choice="auto",
    )  # fmt: skip

    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert isinstance(json.loads(calls[0].arguments)["city"], str)
    sent = world.last_upstream("/v1/chat/completions")["body"]
    assert sent["tools"] == [
        {"type": "function", "function": {k: v for k, v in WEATHER_TOOL.items() if k != "type"}}
    ]

    second = client.responses.create(
        model="test/gpt", tools=[WEATHER_TOOL],
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"type": "function_call", "call_id": calls[0].call_id, "name": calls[0].name,
             "arguments": calls[0].arguments},
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 C"},
        ],
    )  # fmt: skip

    assert second.output_text == "Based on the tool result: Sunny, 21 C"
    messages = world.last_upstream("/v1/chat/completions")["body"]["messages"]
    assert messages[1]["tool_calls"][0]["id"] == calls[0].call_id
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": calls[0].call_id,
        "content": "Sunny, 21 C",
    }


class City(BaseModel):
    name: str
    population: int


def test_structured_output_parses_with_text_format(world: World) -> None:
    parsed = world.openai_client().responses.parse(
        model="test/gpt", input="Describe a city", text_format=City
    )

    assert isinstance(parsed.output_parsed, City)
    response_format = world.last_upstream("/v1/chat/completions")["body"]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "City"
    assert response_format["json_schema"]["schema"]["required"] == ["name", "population"]


def test_streamed_text_is_the_responses_event_stream(world: World) -> None:
    client = world.openai_client()
    with client.responses.stream(model="test/gpt", input="Tell me about tea") as stream:
        events = list(stream)
        final = stream.get_final_response()

    kinds = [event.type for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]  # fmt: skip
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]  # fmt: skip
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == answer_text("gpt-4o-mini", "Tell me about tea") == final.output_text
    assert final.usage is not None and final.usage.output_tokens > 0
    record = world.usage_record(generation_of(final.id))
    assert record.streamed and record.status == "succeeded"
    assert record.completion_tokens == final.usage.output_tokens
    assert record.cost == Decimal(str(final.usage.model_extra["cost"])) > 0


@pytest.mark.parametrize("model_id", ["test/gpt", "test/claude", "test/gemini"])
def test_streamed_function_call_arguments(world: World, model_id: str) -> None:
    stream = world.openai_client().responses.create(
        model=model_id, input="What is the weather in Paris?", tools=[WEATHER_TOOL], stream=True
    )
    events = list(stream)

    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and done[0].arguments == deltas and json.loads(deltas)["city"]
    final = events[-1].response
    assert final.output[0].type == "function_call" and final.output[0].arguments == deltas


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"model": "test/gpt"}, "input", "input is required"),
        ({"model": "test/gpt", "input": []}, "input", "input is required"),
        ({"model": "test/gpt", "input": [{"role": "robot", "content": "x"}]}, "input", "role"),
        ({"model": "test/gpt", "input": [{"type": "item_reference", "id": 7}]}, "input", "id must be a string"),
        ({"model": "test/gpt", "input": [{"role": "user", "content": [{"type": "input_file"}]}]}, "input", "content[0]"),
        ({"model": "test/gpt", "input": "x", "conversation": "conv_1"}, "conversation", "previous_response_id"),
        ({"model": "test/gpt", "input": "x", "store": "yes"}, "store", "true or false"),
        ({"model": "test/gpt", "input": "x", "previous_response_id": 3}, "previous_response_id", "response id"),
        ({"model": "test/gpt", "input": "x", "tools": [{"type": "web_search"}]}, "tools", "web_search"),
        ({"model": "test/gpt", "input": "x", "tools": [{"type": "file_search"}]}, "tools", "file_search"),
        ({"model": "test/gpt", "input": "x", "tool_choice": {"type": "x"}}, "tool_choice", "tool_choice"),
        ({"model": "test/gpt", "input": "x", "text": {"format": {"type": "yaml"}}}, "text", "text.format"),
        ({"model": "test/gpt", "input": "x", "max_output_tokens": 0}, "max_output_tokens", "positive"),
        ({"model": "test/gpt", "input": "x", "instructions": 3}, "instructions", "string"),
        ({"model": "test/gpt", "input": "x", "messages": []}, "messages", "Unknown parameter"),
        ({"model": "test/gpt", "input": "x", "top_logprobs": 3}, "top_logprobs", "not supported"),
        ({"model": "test/gpt", "input": "x", "include": ["message.output_text.logprobs"]},
         "include", "logprobs"),
        ({"model": "test/gpt", "input": "x", "reasoning": {"effort": 3}}, "reasoning", "effort"),
    ],
)  # fmt: skip
def test_bad_responses_requests_get_a_400_naming_the_field(
    world: World, body: dict[str, Any], param: str, words: str
) -> None:
    response = httpx.post(f"{world.gateway_url}/v1/responses", json=body, timeout=10,
                          headers={"authorization": f"Bearer {world.key}"})  # fmt: skip

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"]
    assert not world.upstream_requests()
    assert not UsageRecord.objects.exists() and not Reservation.objects.exists()


def test_a_response_cut_at_max_output_tokens_is_incomplete(world: World) -> None:
    client = world.openai_client()
    whole = client.responses.create(
        model="test/gpt", input="Tell me about tea", max_output_tokens=3
    )
    with client.responses.stream(
        model="test/gpt", input="Tell me about tea", max_output_tokens=3
    ) as stream:
        kinds = [event.type for event in stream]

    assert whole.status == "incomplete" and whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    assert kinds[-1] == "response.incomplete"


def test_routed_responses_carry_the_routing_object(world: World) -> None:
    client = world.openai_client()
    whole = client.responses.create(model="router/auto", input="hi")
    with client.responses.stream(model="router/auto", input="hi") as stream:
        created = next(e for e in stream if e.type == "response.created")
        final = stream.get_final_response()

    routing = (whole.model_extra or {})["routing"]
    assert routing["chosen"] == whole.model and routing["ranked"]
    assert (created.response.model_extra or {})["routing"]["chosen"] == routing["chosen"]
    assert (final.model_extra or {})["routing"]["chosen"] == routing["chosen"]


def test_a_mid_stream_failure_is_an_error_event_the_sdk_raises(world: World) -> None:
    world.catalog({"models": [model("test/cut")], "endpoints": [
        endpoint("test/cut", "fake-openai", "gpt-4o@disconnect_after=4")]})  # fmt: skip
    events: list[Any] = []

    with pytest.raises(openai.APIError) as raised:
        for event in world.openai_client().responses.create(model="test/cut", input="Tell a long story",
                                                        stream=True):  # fmt: skip
            events.append(event)

    assert "failed mid-stream" in raised.value.message
    assert events[0].type == "response.created"
    assert not any(e.type == "response.completed" for e in events)
    record = world.usage_record(generation_of(events[0].response.id))
    assert (record.status, record.error_type) == ("failed", "upstream_error_mid_stream")


def test_an_unknown_model_is_a_404_in_the_api_error_format(world: World) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        world.openai_client().responses.create(model="test/nothing", input="hi")

    assert "Unknown model 'test/nothing'" in raised.value.message


def test_usage_reports_reasoning_and_cached_tokens_in_the_responses_names(world: World) -> None:
    world.catalog({"models": [model("test/o3")], "endpoints": [
        endpoint("test/o3", "fake-openai", "o3-mini@cached=10")]})  # fmt: skip

    response = world.openai_client().responses.create(model="test/o3", input="What is 6*7?",
                                                   reasoning={"effort": "high"})  # fmt: skip

    assert world.last_upstream("/v1/chat/completions")["body"]["reasoning_effort"] == "high"
    usage = response.usage
    assert usage is not None
    assert usage.output_tokens_details.reasoning_tokens == 5  # the fake's o-series count
    assert usage.input_tokens_details.cached_tokens == 10
    record = world.usage_record(generation_of(response.id))
    assert (record.reasoning_tokens, record.cached_tokens) == (5, 10)


def test_a_function_call_output_given_as_parts_reaches_chat_as_text(world: World) -> None:
    response = world.openai_client().responses.create(
        model="test/gpt", tools=[WEATHER_TOOL],
        input=[
            {"role": "user", "content": "What is the weather in Oslo?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1",
             "output": [{"type": "input_text", "text": "Snow, "}, {"type": "input_text", "text": "-3 C"}]},
            {"type": "function_call_output", "call_id": "call_2", "output": "Windy"},
        ],
    )  # fmt: skip

    messages = world.last_upstream("/v1/chat/completions")["body"]["messages"]
    assert [call["id"] for call in messages[1]["tool_calls"]] == ["call_1", "call_2"]
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "Snow, -3 C"}
    assert response.output_text.startswith("Based on the tool result:")


def test_a_chat_call_without_an_id_gets_one_unique_to_its_answer() -> None:
    """An upstream that sends no call id: the Responses item made for it names the generation
    (``fc_call_0`` in every such answer made ``fc_`` references ambiguous)."""
    from routing.gateway.responses_answer import response_from_chat

    call = {"type": "function", "function": {"name": "f", "arguments": "{}"}}
    chat = {"id": "gen-7", "model": "m", "created": 0,
            "choices": [{"message": {"tool_calls": [call]}, "finish_reason": "tool_calls"}]}  # fmt: skip
    output = response_from_chat(chat, {})["output"]
    assert [(item["id"], item["call_id"]) for item in output] == [
        ("fc_call_gen-7_0", "call_gen-7_0")
    ]


def test_a_function_call_output_with_a_file_url_is_a_400_naming_it(world: World) -> None:
    """A function_call_output's images and inline files are carried
    (``tests/routing/test_tool_media_ingress.py``); an ``input_file`` by ``file_url``, which no
    adapter fetches, is refused naming the part, nothing sent upstream."""
    sent = len(world.upstream_requests("/v1/chat/completions"))
    with pytest.raises(openai.BadRequestError) as raised:
        world.openai_client().responses.create(
            model="test/gpt", tools=[WEATHER_TOOL],
            input=[
                {"role": "user", "content": "What is the weather in Oslo?"},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1",
                 "output": [{"type": "input_text", "text": "Snow"},
                            {"type": "input_file", "file_url": "https://example.com/a.pdf"}]},
            ],
        )  # fmt: skip

    assert raised.value.body["param"] == "input"  # type: ignore[index]
    message = raised.value.body["message"]  # type: ignore[index]
    assert "input[2].output[1] is an input_file part" in message and "file_url" in message
    assert len(world.upstream_requests("/v1/chat/completions")) == sent
