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
from routing.fake_upstream.openai_shapes import IMAGE_PART, REFUSAL, SQL, thought_of
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


def _streamed_response_events(world: World) -> tuple[list[str], openai.types.responses.Response]:
    """The stream's event types and the response its last event carries (``response.completed``
    or ``response.incomplete``)."""
    client = openai.OpenAI(base_url=f"{world.gateway_url}/v1", api_key=world.key, max_retries=0)
    events = list(client.responses.create(model="test/shaped", input=PROMPT, stream=True))
    last = events[-1]
    assert last.type in ("response.completed", "response.incomplete")
    return [event.type for event in events], last.response


def test_a_streamed_refusal_is_a_refusal_part_on_responses(world: World) -> None:
    """OpenAI's ``refusal`` deltas are Responses' refusal events and a ``refusal`` part, as a
    whole answer's (before, the stream had no message at all)."""
    _catalog(world, "gpt-4o-mini@shape=refusal")

    kinds, response = _streamed_response_events(world)

    assert "response.refusal.delta" in kinds and "response.refusal.done" in kinds
    assert "response.output_text.delta" not in kinds
    message = response.output[0]
    assert message.type == "message"
    assert [(p.type, getattr(p, "refusal", "")) for p in message.content] == [("refusal", REFUSAL)]


def _anthropic_catalog(world: World) -> None:
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/shaped"))
    data["endpoints"].append(
        endpoint("test/shaped", "fake-anthropic", "claude-sonnet-4-5@shape=refusal")
    )
    world.catalog(data)


def test_an_anthropic_stop_as_a_refusal_is_incomplete_for_content_filter_whole_and_streamed(
    world: World,
) -> None:
    """Anthropic's ``stop_reason: refusal`` is ``incomplete`` for ``content_filter`` (OpenAI's
    signal) with the text sent before the stop and no made-up refusal part, whole and streamed,
    as chat says ``content_filter`` with ``refusal`` None."""
    _anthropic_catalog(world)
    client = openai.OpenAI(base_url=f"{world.gateway_url}/v1", api_key=world.key, max_retries=0)
    text = answer_text("claude-sonnet-4-5", PROMPT)

    whole = client.responses.create(model="test/shaped", input=PROMPT)
    kinds, streamed = _streamed_response_events(world)
    chat = _chat(world).choices[0]

    assert whole.status == streamed.status == "incomplete"
    for response in (whole, streamed):
        assert response.incomplete_details is not None
        assert response.incomplete_details.reason == "content_filter"
        parts = [(p.type, getattr(p, "text", None)) for p in response.output[0].content]
        assert parts == [("output_text", text)]
    assert "response.refusal.delta" not in kinds and "response.refusal.done" not in kinds
    assert chat.finish_reason == "content_filter" and chat.message.refusal is None


def test_an_image_part_is_kept_as_images_and_a_reference_part_left_out(world: World) -> None:
    """A list ``content``'s ``image_url`` part (an image model's answer) is served in the
    message's ``images`` (OpenRouter's chat field), the text as ``content``; Mistral's
    ``reference`` part has no place in chat and is left out (before, the image was dropped)."""
    _catalog(world, "gpt-4o-mini@shape=media_parts")

    message = _chat(world).choices[0].message

    assert message.content == answer_text("gpt-4o-mini", PROMPT)
    assert (message.model_extra or {})["images"] == [IMAGE_PART]
    assert "reference" not in orjson.dumps(message.model_dump()).decode()


@pytest.mark.parametrize("stream", [False, True])
def test_a_conversation_continues_after_a_refusal_on_responses(world: World, stream: bool) -> None:
    """A refused answer's ``refusal`` part is taken back as the assistant's turn, by
    ``previous_response_id`` and replayed as input (as openai-agents does); before, both 400."""
    _catalog(world, "gpt-4o-mini@shape=refusal")
    client = openai.OpenAI(base_url=f"{world.gateway_url}/v1", api_key=world.key, max_retries=0)
    if stream:
        refused = list(client.responses.create(model="test/shaped", input=PROMPT, stream=True))
        first = refused[-1].response  # type: ignore[union-attr]
    else:
        first = client.responses.create(model="test/shaped", input=PROMPT)
    assert first.output[0].content[0].type == "refusal"  # type: ignore[union-attr]
    _catalog(world, "gpt-4o-mini")

    chained = client.responses.create(
        model="test/shaped", input="Then tell me about cats", previous_response_id=first.id
    )
    replayed = client.responses.create(
        model="test/shaped",
        input=[
            {"role": "user", "content": PROMPT},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"role": "user", "content": "Then tell me about cats"},
        ],  # type: ignore[list-item]
    )

    assert chained.status == replayed.status == "completed"
    assert chained.output_text and chained.output_text == replayed.output_text


def test_streamed_text_then_a_refusal_closes_the_text_part_before_the_refusal_part(
    world: World,
) -> None:
    """Text streamed before a refusal: part 0's done events come before part 1 is added (as
    OpenAI streams parts, one open at a time); before, part 1 was added while 0 was open."""
    _catalog(world, "gpt-4o-mini@shape=text_refusal")
    client = openai.OpenAI(base_url=f"{world.gateway_url}/v1", api_key=world.key, max_retries=0)

    events = list(client.responses.create(model="test/shaped", input=PROMPT, stream=True))

    order = [(event.type, getattr(event, "content_index", None)) for event in events]
    assert order == [
        ("response.created", None),
        ("response.in_progress", None),
        ("response.output_item.added", None),
        ("response.content_part.added", 0),
        ("response.output_text.delta", 0),
        ("response.output_text.done", 0),
        ("response.content_part.done", 0),
        ("response.content_part.added", 1),
        ("response.refusal.delta", 1),
        ("response.refusal.delta", 1),
        ("response.refusal.done", 1),
        ("response.content_part.done", 1),
        ("response.output_item.done", None),
        ("response.completed", None),
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    message = events[-1].response.output[0]  # type: ignore[union-attr]
    assert [p.type for p in message.content] == ["output_text", "refusal"]  # type: ignore[union-attr]
    assert message.content[1].refusal == REFUSAL  # type: ignore[union-attr]
