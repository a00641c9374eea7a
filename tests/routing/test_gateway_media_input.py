"""Media a client sends, through the official ``openai`` and ``anthropic`` SDKs: malformed bytes are
a 400 naming the field (never a 500), and media a text-only model cannot read in earlier turns or
in tool results becomes a placeholder instead of refusing an agent's every later turn."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

from routing.providers.base import JSON, ProviderAdapter, Target, UpstreamRequest
from routing.providers.gemini import GeminiAdapter, GeminiStreamDecoder
from routing.providers.openai_compat import OpenAICompatAdapter
from routing.providers.tool_media import MEDIA_MOVED
from tests.routing.test_gateway_content_and_shape import _ask
from tests.routing.world import World, base_catalog, endpoint, model

PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
TOOL = {"name": "screenshot", "description": "Take one", "input_schema": {"type": "object"}}


@pytest.mark.parametrize(("model_id", "part", "named"), [
    ("test/claude", {"type": "file", "file": {"file_data": "data:text/plain;base64,abc"}},
     "file.file_data whose data is not valid base64"),
    ("test/gemini", {"type": "file", "file": {"file_data": "data:application/pdf;base64,%%"}},
     "file.file_data whose data is not valid base64"),
    ("test/claude", {"type": "file", "file": {"file_data": "JVBERi0xLjQK", "filename": "a.pdf"}},
     "data: URL"),
    ("test/claude", {"type": "file", "file": "x"}, "is a file part"),
    ("test/gemini", {"type": "input_audio", "input_audio": "x"}, "input_audio.data"),
    ("test/gemini", {"type": "input_audio", "input_audio": {"data": "abc", "format": "wav"}},
     "valid base64"),
    # Gemini would read a PDF as pages (258 tokens each) that the hold counted as one image.
    ("test/gemini", {"type": "image_url", "image_url": {"url": "data:application/pdf;base64,JVBE"}},
     "'application/pdf', not an image: send a PDF or other document as a file part"),
    ("test/gemini", {"type": "image_url", "image_url": "https://example.com/report.PDF?x=1"},
     "'application/pdf', not an image"),
])  # fmt: skip
def test_malformed_chat_media_is_a_400_naming_the_field(
    world: World, model_id: str, part: dict[str, Any], named: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        world.openai_client().chat.completions.create(model=model_id, messages=_ask(**part))  # type: ignore[arg-type]

    assert raised.value.body["param"] == "messages"  # type: ignore[index]
    assert "messages[0].content[1]" in raised.value.body["message"]  # type: ignore[index]
    assert named in raised.value.body["message"]  # type: ignore[index]
    assert world.upstream_requests() == []


@pytest.mark.parametrize(("model_id", "block", "named"), [
    ("test/claude", {"type": "document",
                     "source": {"type": "base64", "media_type": "text/plain", "data": "abc"}},
     "content[1].source needs data as valid base64"),
    ("test/gemini", {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": 7}}, "source needs data"),
    ("test/gpt", {"type": "image", "source": {"type": "base64", "data": "iVBORw0KGgo="}},
     "source needs media_type"),
    ("test/claude", {"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "image", "source": {"type": "file", "file_id": "file_011"}}]}, "'file' source"),
    ("test/claude", {"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}]},
     "content[1].content[0] is a document block with a 'url' source"),
    ("test/claude", {"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "search_result", "source": "https://example.com", "title": "t",
         "content": [{"type": "text", "text": "x"}]}]}, "search_result block"),
])  # fmt: skip
def test_malformed_or_untranslatable_blocks_are_a_400_naming_them(
    world: World, model_id: str, block: dict[str, Any], named: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        world.anthropic_client().messages.create(
            model=model_id,
            max_tokens=50,
            messages=_ask(**block),  # type: ignore[arg-type]
        )

    assert raised.value.status_code == 400
    assert named in raised.value.body["error"]["message"]  # type: ignore[index]
    assert world.upstream_requests() == []


def test_an_image_sent_as_a_file_reaches_anthropic_as_an_image(world: World) -> None:
    file = {"type": "file", "file": {"file_data": "data:image/png;base64,iVBORw0KGgo="}}
    world.openai_client().chat.completions.create(model="test/claude", messages=_ask(**file))  # type: ignore[arg-type]

    content = world.last_upstream("/v1/messages")["body"]["messages"][-1]["content"]
    assert {"type": "image", "source": PNG} in content


def test_an_anthropic_client_tool_type_is_refused_with_what_to_do(world: World) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        world.anthropic_client().messages.create(
            model="test/claude",
            max_tokens=50,
            tools=[{"type": "bash_20250124", "name": "bash"}],
            messages=[{"role": "user", "content": "ls"}],
        )

    message = raised.value.body["error"]["message"]  # type: ignore[index]
    assert "Anthropic-defined tool type 'bash_20250124'" in message
    assert "custom tool" in message and "server tool" not in message


def _text_only(world: World) -> None:
    catalog = base_catalog(world.fake_url)
    catalog["models"].append(model("test/plain", capabilities=["tools", "streaming"]))
    catalog["endpoints"] += [
        endpoint("test/plain", slug, upstream)
        for slug, upstream in (("fake-openai", "gpt-4o-mini"), ("fake-anthropic", "claude-x"),
                               ("fake-gemini", "gemini-2.5-flash"))
    ]  # fmt: skip
    world.catalog(catalog)


def _agent_turns(user_text: str = "Go on") -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "What is on the screen?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "screenshot", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
            {"type": "text", "text": "Taken."}, {"type": "image", "source": PNG},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                            "data": "Log."}}]},
            {"type": "text", "text": user_text}]},
    ]  # fmt: skip


def test_a_tool_result_screenshot_on_a_text_only_model_is_a_placeholder(world: World) -> None:
    _text_only(world)
    client = world.anthropic_client()
    for provider in ("fake-openai", "fake-anthropic", "fake-gemini"):
        client.messages.create(
            model="test/plain",
            max_tokens=50,
            tools=[TOOL],  # type: ignore[list-item]
            messages=_agent_turns(),  # type: ignore[arg-type]
            extra_body={"provider": {"order": [provider], "allow_fallbacks": False}},
        )

        sent = str(world.last_upstream()["body"])
        assert "Taken." in sent and "Log." in sent
        assert "[image omitted: this model reads no image input]" in sent
        assert "iVBORw0KGgo=" not in sent and "_tool_result" not in sent
    assert len(world.upstream_requests()) == 3


def test_only_the_latest_turns_own_image_needs_a_vision_model(world: World) -> None:
    _text_only(world)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Look"}, image]},
        {"role": "assistant", "content": "A cat."},
    ]
    client = world.openai_client()
    client.chat.completions.create(
        model="test/plain",
        messages=[*history, {"role": "user", "content": "And now?"}],  # type: ignore[arg-type]
    )

    assert "iVBORw0KGgo=" not in str(world.last_upstream()["body"])
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="test/plain", messages=history[:1])  # type: ignore[arg-type]
    assert raised.value.body["param"] == "messages"  # type: ignore[index]


def test_a_tool_result_screenshot_still_reaches_a_vision_model_unmarked(world: World) -> None:
    world.anthropic_client().messages.create(
        model="test/gpt",
        max_tokens=50,
        tools=[TOOL],  # type: ignore[list-item]
        messages=_agent_turns(),  # type: ignore[arg-type]
    )

    sent = world.last_upstream("/v1/chat/completions")["body"]
    content = sent["messages"][-1]["content"]
    assert "_tool_result" not in str(sent)
    assert {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}} in (
        content
    )


def test_gemini_stream_tool_call_indices_count_per_candidate() -> None:
    decoder = GeminiStreamDecoder(UpstreamRequest(url="", headers={}, body={}))
    call = {"functionCall": {"name": "f", "args": {}}}
    chunk = {"candidates": [{"index": i, "content": {"parts": [call]}} for i in (0, 1)]}

    choices = decoder.feed(None, json.dumps(chunk))

    assert [[c["index"] for c in ch["delta"]["tool_calls"]] for ch in choices] == [[0], [0]]


_PNG = "data:image/png;base64,iVBORw0KGgo="
_SHOT = {"type": "image_url", "image_url": {"url": _PNG}}
_FROM_CALL_1 = {"type": "text", "text": "[returned by tool call call_1]"}


def _chat_tool_screenshot(world: World, model_id: str, provider: str = "") -> dict[str, Any]:
    """A chat agent turn whose tool returned text and a screenshot, through the openai client;
    the body the fake upstream received."""

    def call(id_: str) -> dict[str, Any]:
        return {"id": id_, "type": "function",
                "function": {"name": "screenshot", "arguments": "{}"}}  # fmt: skip

    messages: Any = [
        {"role": "user", "content": "What is on the screen?"},
        {"role": "assistant", "content": None, "tool_calls": [call("call_1"), call("call_2")]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "Taken."}, _SHOT]},
        {"role": "tool", "tool_call_id": "call_2", "content": "Nothing else."},
        {"role": "user", "content": "Describe it."},
    ]  # fmt: skip
    order = {"provider": {"order": [provider], "allow_fallbacks": False}} if provider else {}
    world.openai_client().chat.completions.create(
        model=model_id, messages=messages, extra_body=order
    )
    body: dict[str, Any] = world.last_upstream()["body"]
    return body


def test_a_chat_tool_screenshot_reaches_an_openai_host_in_a_user_message_after_the_tools(
    world: World,
) -> None:
    """OpenAI's tool message holds text parts only: the screenshot goes in a user message after
    the tool messages (before: a 400, and before that sent where OpenAI refuses it)."""
    sent = _chat_tool_screenshot(world, "test/gpt")["messages"]

    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "user", "user"]
    assert sent[2]["content"] == [{"type": "text", "text": "Taken."}]
    assert sent[4]["content"] == [_FROM_CALL_1, _SHOT]
    assert sent[5]["content"] == "Describe it."


def test_a_chat_tool_screenshot_stays_in_claudes_tool_result(world: World) -> None:
    """Anthropic's ``tool_result`` holds image blocks: the screenshot stays in it."""
    turns = _chat_tool_screenshot(world, "test/claude")["messages"]

    result = turns[2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "call_1"
    source = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    assert result["content"] == [
        {"type": "text", "text": "Taken."},
        {"type": "image", "source": source},
    ]
    assert turns[2]["content"][1]["content"] == "Nothing else."


def test_a_chat_tool_screenshot_follows_geminis_function_responses(world: World) -> None:
    """A ``functionResponse`` is a JSON object: the screenshot follows the responses in their
    user turn, as ``/v1/messages`` sends a ``tool_result``'s."""
    contents = _chat_tool_screenshot(world, "test/gemini")["contents"]

    parts = contents[2]["parts"]
    assert [next(iter(part)) for part in parts] == [
        "functionResponse", "functionResponse", "text", "inlineData", "text"
    ]  # fmt: skip
    assert parts[0]["functionResponse"]["response"] == {"content": "Taken."}
    assert parts[2] == {"text": _FROM_CALL_1["text"]}
    assert parts[3]["inlineData"] == {"mimeType": "image/png", "data": "iVBORw0KGgo="}


def _two_tools_screenshots(adapter: ProviderAdapter) -> JSON:
    """The upstream body for a turn whose two tool calls each returned a screenshot only."""
    call = {"id": "", "type": "function", "function": {"name": "shot", "arguments": "{}"}}
    messages: Any = [
        {"role": "user", "content": "Compare the screens."},
        {"role": "assistant", "content": None,
         "tool_calls": [call | {"id": "call_1"}, call | {"id": "call_2"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [_SHOT]},
        {"role": "tool", "tool_call_id": "call_2", "content": [_SHOT]},
    ]  # fmt: skip
    target = Target("https://up.example/v1", "up-model", None, 64)
    return adapter.build_request({"messages": messages}, target, stream=False).body


def test_tools_media_moved_for_an_openai_host_is_labelled_with_its_call() -> None:
    """Several tools' media share one user message: each tool's follows a text part naming its
    call, and a tool message left with nothing says where its media went (before: no label,
    and an empty result, which reads as "the tool returned nothing")."""
    sent = _two_tools_screenshots(OpenAICompatAdapter())["messages"]

    assert [m["content"] for m in sent[2:4]] == [MEDIA_MOVED, MEDIA_MOVED]
    label_2 = {"type": "text", "text": "[returned by tool call call_2]"}
    assert sent[4] == {"role": "user", "content": [_FROM_CALL_1, _SHOT, label_2, _SHOT]}


def test_tools_media_moved_for_gemini_is_labelled_with_its_call() -> None:
    """As for OpenAI-style hosts; Gemini's ``functionResponse`` takes the note as an object."""
    parts = _two_tools_screenshots(GeminiAdapter())["contents"][2]["parts"]

    responses = [part["functionResponse"]["response"] for part in parts[:2]]
    assert responses == [{"content": MEDIA_MOVED}, {"content": MEDIA_MOVED}]
    assert [next(iter(part)) for part in parts[2:]] == ["text", "inlineData", "text", "inlineData"]
    assert [parts[2]["text"], parts[4]["text"]] == [
        "[returned by tool call call_1]", "[returned by tool call call_2]"
    ]  # fmt: skip


def test_a_chat_tool_screenshot_on_a_text_only_model_is_a_placeholder(world: World) -> None:
    """Media a tool returned is not the turn's own (as on ``/v1/messages``): a text-only model
    is served, the screenshot a placeholder in the tool's text."""
    _text_only(world)
    for provider in ("fake-openai", "fake-anthropic", "fake-gemini"):
        sent = str(_chat_tool_screenshot(world, "test/plain", provider))

        assert "Taken." in sent and "[image omitted: this model reads no image input]" in sent
        assert "iVBORw0KGgo=" not in sent
    assert len(world.upstream_requests()) == 3


def test_audio_in_a_chat_tool_message_is_a_400_naming_it(world: World) -> None:
    """No provider reads audio from a tool: a 400 naming the part, nothing sent."""
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    messages: Any = [
        {"role": "user", "content": "Record it."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "rec", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": [audio]},
    ]  # fmt: skip

    with pytest.raises(openai.BadRequestError) as raised:
        world.openai_client().chat.completions.create(model="test/gpt", messages=messages)

    message = raised.value.body["message"]  # type: ignore[index]
    assert "messages[2].content[0] is a tool message's input_audio part" in message
    assert world.upstream_requests() == []


def test_an_answers_images_sent_back_are_not_sent_to_an_openai_host(world: World) -> None:
    """An assistant message's ``images`` (OpenRouter's field, as chat answers an image model's
    output) is not OpenAI's: it is left out for an OpenAI-style host, which takes images from
    user messages only (before: sent as it came)."""
    messages: Any = [
        {"role": "user", "content": "Draw a cat."},
        {"role": "assistant", "content": "Here it is.", "images": [_SHOT]},
        {"role": "user", "content": "Thanks. Now a dog."},
    ]

    world.openai_client().chat.completions.create(model="test/gpt", messages=messages)

    sent = world.last_upstream("/v1/chat/completions")["body"]["messages"]
    assert sent[1] == {"role": "assistant", "content": "Here it is."}
