"""Whole answers of every shape OpenAI's and Mistral's wire formats allow — list ``content``,
a ``refusal``, null content with a tool call, Magistral's ``thinking`` parts — served over HTTP
from the fake upstream through the official SDKs; shapes outside them are a 502 billed nothing
(the malformed-answer path), never a 500 after billing."""

from __future__ import annotations

import anthropic
import openai
import orjson
import pytest

from routing.fake_upstream.answers import answer_text
from routing.fake_upstream.openai_shapes import REFUSAL, SQL, thought_of
from tests.routing.world import World, base_catalog, endpoint, model

PROMPT = "Tell me about owls"


def _catalog(world: World, upstream: str) -> None:
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/shaped"))
    data["endpoints"].append(endpoint("test/shaped", "fake-openai", upstream))
    world.catalog(data)


def _messages(world: World, **extra: object) -> anthropic.types.Message:
    client = world.anthropic_client()
    return client.messages.create(
        model="test/shaped",
        max_tokens=200,
        messages=[{"role": "user", "content": PROMPT}],
        **extra,  # type: ignore[arg-type]
    )


def _chat(world: World, **extra: object) -> openai.types.chat.ChatCompletion:
    client = world.openai_client()
    return client.chat.completions.create(
        model="test/shaped",
        messages=[{"role": "user", "content": PROMPT}],
        **extra,  # type: ignore[call-overload]
    )


def test_text_parts_content_becomes_a_text_block(world: World) -> None:
    _catalog(world, "gpt-4o-mini@shape=parts")

    message = _messages(world)

    assert [(b.type, getattr(b, "text", "")) for b in message.content] == [
        ("text", answer_text("gpt-4o-mini", PROMPT))
    ]
    assert world.usage_record(message.id).cost > 0


def test_a_refusal_is_a_text_block_stopped_as_a_refusal(world: World) -> None:
    _catalog(world, "gpt-4o-mini@shape=refusal")

    message = _messages(world)

    assert [(b.type, getattr(b, "text", "")) for b in message.content] == [("text", REFUSAL)]
    assert message.stop_reason == "refusal"
    assert _chat(world).choices[0].message.refusal == REFUSAL


def test_a_streamed_refusal_is_a_text_block_stopped_as_a_refusal(world: World) -> None:
    _catalog(world, "gpt-4o-mini@shape=refusal")
    client = world.anthropic_client()

    with client.messages.stream(
        model="test/shaped", max_tokens=200, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        message = stream.get_final_message()

    assert [(b.type, getattr(b, "text", "")) for b in message.content] == [("text", REFUSAL)]
    assert message.stop_reason == "refusal"


def test_a_refusal_is_a_refusal_part_on_responses(world: World) -> None:
    _catalog(world, "gpt-4o-mini@shape=refusal")
    client = world.openai_client()

    response = client.responses.create(model="test/shaped", input=PROMPT)

    message = response.output[0]
    assert message.type == "message"
    assert [(p.type, getattr(p, "refusal", "")) for p in message.content] == [("refusal", REFUSAL)]
    assert world.usage_record(response.id.removeprefix("resp_")).cost > 0


def test_a_refusal_after_reasoning_is_still_a_refusal(world: World) -> None:
    _catalog(world, "gpt-4o-mini@shape=reasoned_refusal")

    message = _messages(world)

    assert [b.type for b in message.content] == ["thinking", "text"]
    assert getattr(message.content[1], "text", "") == REFUSAL
    assert message.stop_reason == "refusal"


@pytest.mark.parametrize("shape", ["refusal", "custom_call"])
def test_a_refusal_or_custom_call_counted_as_no_tokens_is_billed_an_estimate(
    world: World, shape: str
) -> None:
    _catalog(world, f"gpt-4o-mini@shape={shape},report_completion=0")

    completion = _chat(world)

    message = completion.choices[0].message
    assert message.refusal == REFUSAL if shape == "refusal" else message.tool_calls
    record = world.usage_record(completion.id)
    assert record.completion_tokens > 0 and "usage_clamped" in record.flag_list


def test_a_refusal_with_an_impossible_count_is_served_not_unusable(world: World) -> None:
    _catalog(world, "gpt-4o-mini@shape=refusal,report_completion=-5")

    completion = _chat(world)

    assert completion.choices[0].message.refusal == REFUSAL
    assert world.usage_record(completion.id).cost > 0


def test_null_content_with_a_tool_call_is_a_tool_use_block(world: World) -> None:
    _catalog(world, "gpt-4o-mini")
    tool = {"name": "get_weather", "description": "Weather for a city", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip

    message = _messages(world, tools=[tool], tool_choice={"type": "tool", "name": "get_weather"})

    assert [b.type for b in message.content] == ["tool_use"]
    assert message.stop_reason == "tool_use"


def test_a_custom_tool_call_is_served_and_billed(world: World) -> None:
    _catalog(world, "gpt-4o-mini@shape=custom_call")
    tool = {"type": "custom", "custom": {"name": "run_sql", "description": "Run one query"}}

    completion = _chat(world, tools=[tool])

    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (call.type, call.custom.name, call.custom.input) == ("custom", "run_sql", SQL)  # type: ignore[union-attr]
    assert world.usage_record(completion.id).cost > 0


def test_a_tool_call_whose_arguments_are_an_object_is_served_as_json_text(world: World) -> None:
    _catalog(world, "mistral-small-latest@shape=object_args")

    completion = _chat(world)

    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert orjson.loads(call.function.arguments) == {"city": "Oslo"}  # type: ignore[union-attr]
    assert world.usage_record(completion.id).cost > 0


@pytest.mark.parametrize(
    "shape",
    ["object", "bad_call", "null_text", "number_refusal", "list_reasoning",
     "object_reasoning_content", "number_finish", "string_choice"],
)  # fmt: skip
def test_an_answer_outside_the_wire_formats_is_a_502_billed_nothing(
    world: World, shape: str
) -> None:
    _catalog(world, f"gpt-4o-mini@shape={shape}")

    with pytest.raises(anthropic.APIStatusError) as raised:
        _messages(world)

    assert raised.value.status_code == 502
    error = raised.value.body["error"]  # type: ignore[index]
    assert error["metadata"]["attempts"][0]["error"] == "malformed_response"
    detail = error["metadata"]["attempts"][0]["detail"]
    assert "malformed answer" in detail and "expected str instance" not in detail  # Python's
    record = world.usage_record(error["metadata"]["generation_id"])
    assert (record.status, record.cost) == ("failed", 0)


def test_magistral_thinking_parts_are_reasoning_whole_as_streamed(world: World) -> None:
    _catalog(world, "magistral-medium-latest")
    text = answer_text("magistral-medium-latest", PROMPT)

    whole = _chat(world).choices[0].message
    chunks = list(_chat(world, stream=True))
    streamed = [c.choices[0].delta for c in chunks if c.choices]
    message = _messages(world)

    assert (whole.content, whole.model_extra["reasoning"]) == (text, thought_of(text))
    assert "".join(d.content or "" for d in streamed) == text
    assert "".join((d.model_extra or {}).get("reasoning") or "" for d in streamed) == thought_of(
        text
    )
    assert [(b.type, getattr(b, "thinking", getattr(b, "text", ""))) for b in message.content] == [
        ("thinking", thought_of(text)),
        ("text", text),
    ]
