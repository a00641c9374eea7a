"""Stop sequences as the anthropic SDK reads them: an answer a stop sequence ended says so
(``stop_reason`` "stop_sequence" and the sequence), whole and streamed, as Anthropic's API does;
OpenAI-format clients get ``finish_reason`` "stop" and the same sequence on the choice."""

from __future__ import annotations

import pytest

from routing.fake_upstream.answers import answer_text
from tests.routing.world import World

PROMPT = "Describe the sea"
STOPS = ["zebra", "trade-offs", "assumptions"]


def _expected() -> tuple[str, str]:
    """The fake Claude's answer up to its first stop sequence, and that sequence."""
    text = answer_text("claude-sonnet-4-5", PROMPT)
    stop = min((s for s in STOPS if s in text), key=text.find)
    return text[: text.find(stop)], stop


def test_the_stop_sequence_that_ended_an_answer_is_named(world: World) -> None:
    ask: dict = {"model": "test/claude", "max_tokens": 500, "stop_sequences": STOPS,
                 "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip
    text, stop = _expected()

    message = world.anthropic_client().messages.create(**ask)
    with world.anthropic_client().messages.stream(**ask) as stream:
        streamed = stream.get_final_message()

    assert world.last_upstream("/v1/messages")["body"]["stop_sequences"] == STOPS
    for answer in (message, streamed):  # were "end_turn" and None
        assert (answer.stop_reason, answer.stop_sequence) == ("stop_sequence", stop)
        assert answer.content[0].text == text  # type: ignore[union-attr]


def test_an_answer_no_stop_sequence_ended_is_an_end_turn(world: World) -> None:
    message = world.anthropic_client().messages.create(
        model="test/claude", max_tokens=500, stop_sequences=["zebra"],
        messages=[{"role": "user", "content": PROMPT}],
    )  # fmt: skip

    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert message.content[0].text == answer_text("claude-sonnet-4-5", PROMPT)  # type: ignore[union-attr]


@pytest.mark.parametrize("stream", [False, True])
def test_an_openai_client_gets_stop_and_the_sequence_on_the_choice(
    world: World, stream: bool
) -> None:
    ask: dict = {"model": "test/claude", "stop": STOPS,
                 "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip
    text, stop = _expected()
    client = world.openai_client()

    if stream:
        chunks = list(client.chat.completions.create(**ask, stream=True))
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        last = next(c.choices[0] for c in reversed(chunks) if c.choices)
    else:
        last = client.chat.completions.create(**ask).choices[0]
        content = last.message.content or ""

    assert content == text and last.finish_reason == "stop"
    assert (last.model_extra or {})["stop_sequence"] == stop


def test_a_gated_pipeline_keeps_the_stop_sequence_whole_and_streamed(world: World) -> None:
    steps = [{"model": "test/claude", "gate": {"type": "regex", "pattern": "."}}]
    assert world.pipeline_create("stops", "cascade", steps).status_code == 201
    ask: dict = {"model": "pipeline/stops", "max_tokens": 500, "stop_sequences": STOPS,
                 "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip
    text, stop = _expected()

    message = world.anthropic_client().messages.create(**ask)
    with world.anthropic_client().messages.stream(
        **ask
    ) as stream:  # buffered: the gate reads it whole
        streamed = stream.get_final_message()
    chunks = list(
        world.openai_client().chat.completions.create(
            model="pipeline/stops", stop=STOPS, stream=True,
            messages=[{"role": "user", "content": PROMPT}],
        )
    )  # fmt: skip

    for answer in (message, streamed):  # streamed was "end_turn" and None
        assert (answer.stop_reason, answer.stop_sequence) == ("stop_sequence", stop)
        assert answer.content[0].text == text  # type: ignore[union-attr]
    last = chunks[-1].choices[0]
    assert last.finish_reason == "stop" and (last.model_extra or {})["stop_sequence"] == stop
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
