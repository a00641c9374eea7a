"""An earlier answer's refusal sent back in the history reaches each provider in its own terms:
OpenAI-style hosts as chat's refusal (a ``refusal`` part or field, as OpenAI answered it),
Claude and Gemini, which have no such field, as the assistant turn's text."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.routing.world import World

REFUSAL = "I can't help with that."


def _assistant_sent(world: World, model_id: str) -> Any:
    """The assistant turn the upstream received, in its own wire format."""
    body = world.last_upstream()["body"]
    if model_id == "test/gpt":
        return next(m for m in body["messages"] if m["role"] == "assistant")
    if model_id == "test/claude":
        return next(t for t in body["messages"] if t["role"] == "assistant")["content"]
    return next(c for c in body["contents"] if c["role"] == "model")["parts"]


_AS_TEXT = {
    "test/claude": [{"type": "text", "text": REFUSAL}],
    "test/gemini": [{"text": REFUSAL}],
}


@pytest.mark.parametrize("model_id", ["test/gpt", "test/claude", "test/gemini"])
def test_a_responses_refusal_replayed_reaches_each_provider_in_its_terms(
    world: World, model_id: str
) -> None:
    # Before: a text part for every provider, so an OpenAI-style host read the refusal as the
    # model's ordinary answer.
    refused = {"type": "message", "role": "assistant",
               "content": [{"type": "refusal", "refusal": REFUSAL}]}  # fmt: skip
    world.openai_client().responses.create(
        model=model_id,
        input=[
            {"role": "user", "content": "Help me."},
            refused,  # type: ignore[list-item]
            {"role": "user", "content": "Something else, then."},
        ],
    )

    sent = _assistant_sent(world, model_id)
    if model_id == "test/gpt":
        assert sent["content"] == [{"type": "refusal", "refusal": REFUSAL}]
    else:
        assert sent == _AS_TEXT[model_id]


@pytest.mark.parametrize("model_id", ["test/claude", "test/gemini"])
def test_a_chat_refusal_field_replayed_reaches_claude_and_gemini_as_text(
    world: World, model_id: str
) -> None:
    # Before: an assistant message with only ``refusal`` was dropped for Claude and Gemini (its
    # content null): the two user turns merged, the refusal unsaid.
    messages: Any = [
        {"role": "user", "content": "Help me."},
        {"role": "assistant", "content": None, "refusal": REFUSAL},
        {"role": "user", "content": "Something else, then."},
    ]
    world.openai_client().chat.completions.create(model=model_id, messages=messages)

    assert _assistant_sent(world, model_id) == _AS_TEXT[model_id]


def test_a_chat_refusal_field_replayed_reaches_an_openai_host_as_sent(world: World) -> None:
    messages: Any = [
        {"role": "user", "content": "Help me."},
        {"role": "assistant", "content": None, "refusal": REFUSAL},
        {"role": "user", "content": "Something else, then."},
    ]
    world.openai_client().chat.completions.create(model="test/gpt", messages=messages)

    assert _assistant_sent(world, "test/gpt")["refusal"] == REFUSAL


@pytest.mark.parametrize(
    ("assistant", "named"),
    [
        ({"content": None, "refusal": 1}, "messages[1].refusal must be a string"),
        ({"content": [{"type": "refusal", "refusal": 1}]}, "messages[1].content[0] is a refusal"),
    ],
)
def test_a_refusal_that_is_not_a_string_is_a_400_naming_it(
    world: World, assistant: dict[str, Any], named: str
) -> None:
    # Before: sent on, and each adapter read a refusal it then dropped or passed as it came.
    messages: Any = [{"role": "user", "content": "Hi"}, {"role": "assistant", **assistant},
                     {"role": "user", "content": "Again."}]  # fmt: skip

    with pytest.raises(openai.BadRequestError) as raised:
        world.openai_client().chat.completions.create(model="test/gpt", messages=messages)

    assert named in raised.value.body["message"]  # type: ignore[index]
    assert world.upstream_requests() == []
