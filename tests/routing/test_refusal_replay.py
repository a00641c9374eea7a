"""An earlier answer's refusal sent back in the history reaches each provider in its own terms:
OpenAI as chat's refusal (a ``refusal`` part or field, as it answered it; its provider's
``takes_refusals`` option), Claude, Gemini and the other OpenAI-style hosts (Mistral, Groq…,
which refuse part types they do not know) as the assistant turn's text."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from tests.routing.world import World, base_catalog, endpoint
from tests.security.own_host import COMPLETION, own_host_serving

REFUSAL = "I can't help with that."
# test/gpt's two hosts: fake-openai stands for OpenAI, fake-openai-b for another OpenAI-style one.
OPENAI, OTHER = "fake-openai", "fake-openai-b"


def _openai_and_another(world: World) -> None:
    data = base_catalog(world.fake_url)
    data["providers"][0]["options"] = {"takes_refusals": True}  # as catalog.toml's openai
    data["endpoints"].append(endpoint("test/gpt", OTHER, "gpt-4o-mini"))
    world.catalog(data)


def _on(provider: str) -> dict[str, Any]:
    return {"provider": {"order": [provider], "allow_fallbacks": False}}


def _responses_replayed(world: World, model_id: str, parts: list[Any], provider: str = "") -> None:
    """A /v1/responses turn whose history holds an assistant message of ``parts``."""
    refused = {"type": "message", "role": "assistant", "content": parts}
    world.openai_client().responses.create(
        model=model_id,
        input=[
            {"role": "user", "content": "Help me."},
            refused,  # type: ignore[list-item]
            {"role": "user", "content": "Something else, then."},
        ],
        extra_body=_on(provider) if provider else None,
    )


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
    # Before: a text part for every provider, so OpenAI read the refusal as the model's
    # ordinary answer.
    _openai_and_another(world)
    provider = OPENAI if model_id == "test/gpt" else ""
    _responses_replayed(world, model_id, [{"type": "refusal", "refusal": REFUSAL}], provider)

    sent = _assistant_sent(world, model_id)
    if model_id == "test/gpt":
        assert sent["content"] == [{"type": "refusal", "refusal": REFUSAL}]
    else:
        assert sent == _AS_TEXT[model_id]


def test_a_responses_refusal_replayed_reaches_another_openai_style_host_as_text(
    world: World,
) -> None:
    # Before: chat's refusal part to every OpenAI-style host; Mistral, Groq, Together… refuse a
    # part type they do not know (a 400/422 where the conversation used to work).
    _openai_and_another(world)
    _responses_replayed(world, "test/gpt", [{"type": "refusal", "refusal": REFUSAL}], OTHER)

    assert _assistant_sent(world, "test/gpt")["content"] == [{"type": "text", "text": REFUSAL}]


_TEXT = {"type": "output_text", "text": "Partly."}
_REFUSED = {"type": "refusal", "refusal": REFUSAL}


@pytest.mark.parametrize("parts", [[_TEXT, _REFUSED], [_REFUSED, _REFUSED]])
def test_a_responses_refusal_beside_other_parts_reaches_openai_as_text(
    world: World, parts: list[Any]
) -> None:
    # OpenAI's assistant message takes text parts or exactly one refusal part, never a mix.
    # Before: [text, refusal] and two refusals sent as they came.
    _openai_and_another(world)
    _responses_replayed(world, "test/gpt", parts, OPENAI)

    sent = _assistant_sent(world, "test/gpt")["content"]
    texts = [part.get("text", part.get("refusal")) for part in parts]
    assert sent == [{"type": "text", "text": text} for text in texts]


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


def test_a_chat_refusal_field_replayed_reaches_openai_as_sent_and_others_as_text(
    world: World,
) -> None:
    # Before: the refusal field to every OpenAI-style host, which many refuse as unknown.
    _openai_and_another(world)
    messages: Any = [
        {"role": "user", "content": "Help me."},
        {"role": "assistant", "content": None, "refusal": REFUSAL},
        {"role": "user", "content": "Something else, then."},
    ]
    chat = world.openai_client().chat.completions
    sent = []
    for provider in (OPENAI, OTHER):
        chat.create(model="test/gpt", messages=messages, extra_body=_on(provider))
        sent.append(_assistant_sent(world, "test/gpt"))

    assert sent[0] == {"role": "assistant", "content": None, "refusal": REFUSAL}
    assert sent[1] == {"role": "assistant", "content": REFUSAL}


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


class _Host:
    """An organization's own OpenAI-compatible host (a vLLM) that keeps each body it receives."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        self.bodies.append(orjson.loads(b"".join(chunks)))
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": orjson.dumps(COMPLETION)})


def test_an_own_host_on_openais_provider_gets_a_refusal_as_text(
    world: World, settings: Any
) -> None:
    # Before: ``takes_refusals`` is OpenAI's host's, but it went with the provider's options to
    # an organization's own host (``base_url``) on that provider, which may refuse the field.
    _openai_and_another(world)
    host = _Host()
    messages: Any = [
        {"role": "user", "content": "Help me."},
        {"role": "assistant", "content": None, "refusal": REFUSAL},
        {"role": "user", "content": "Something else, then."},
    ]
    with own_host_serving(world, settings, host):
        world.openai_client().chat.completions.create(model="test/own", messages=messages)

    sent = next(m for m in host.bodies[-1]["messages"] if m["role"] == "assistant")
    assert sent == {"role": "assistant", "content": REFUSAL}
