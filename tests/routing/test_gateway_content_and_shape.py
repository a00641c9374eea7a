"""What a provider cannot give is refused, never dropped: ``n`` choices, ``logprobs``, files and
documents through the official ``openai`` and ``anthropic`` SDKs, to each wire format."""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import openai
import pytest

from tests.routing.world import World

PDF = "data:application/pdf;base64,JVBERi0xLjQK"
# A PDF as each wire format carries it: (model, upstream path, the part sent there).
PDF_AS_SENT = [
    ("test/gpt", "/v1/chat/completions",
     {"type": "file", "file": {"file_data": PDF, "filename": "report.pdf"}}),
    ("test/claude", "/v1/messages",
     {"type": "document", "title": "report.pdf",
      "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}}),
    ("test/gemini", ":generateContent",
     {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0xLjQK"}}),
]  # fmt: skip
AUDIO = base64.b64encode(b"RIFF....WAVE").decode()


def _ask(**parts: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "Summarize this"}, parts]}]


def test_n_choices_from_gemini_are_its_candidates(world: World) -> None:
    completion = world.openai_client().chat.completions.create(
        model="test/gemini", n=3, messages=[{"role": "user", "content": "Hi"}]
    )

    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert len({choice.message.content for choice in completion.choices}) == 1
    sent = world.last_upstream(":generateContent")["body"]
    assert sent["generationConfig"]["candidateCount"] == 3


@pytest.mark.parametrize(("model", "options", "param"), [
    ("test/claude", {"n": 2}, "n"),
    ("test/claude", {"logprobs": True, "top_logprobs": 2}, "logprobs"),
    ("test/gemini", {"logprobs": True}, "logprobs"),
])  # fmt: skip
def test_a_shape_the_provider_cannot_give_is_a_400_naming_it(
    world: World, model: str, options: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        world.openai_client().chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], **options
        )

    assert raised.value.status_code == 400
    assert raised.value.body["param"] == param  # type: ignore[index]
    assert "GET /v1/models" in raised.value.body["message"]  # type: ignore[index]
    assert world.upstream_requests() == []


def test_a_fallback_that_can_give_the_shape_serves_it(world: World) -> None:
    completion = world.openai_client().chat.completions.create(
        model="test/claude",
        n=2,
        logprobs=True,
        messages=[{"role": "user", "content": "Hi"}],
        extra_body={"models": ["test/gpt"]},
    )

    assert completion.model == "test/gpt"
    assert [choice.index for choice in completion.choices] == [0, 1]
    assert completion.choices[0].logprobs is not None and completion.choices[0].logprobs.content


def test_a_custom_tool_goes_only_to_an_openai_style_host(world: World) -> None:
    custom = {"type": "custom", "custom": {"name": "run_sql", "description": "Run a query"}}
    client = world.openai_client()
    client.chat.completions.create(
        model="test/gpt",
        tools=[custom],
        messages=[{"role": "user", "content": "Hi"}],  # type: ignore[list-item]
    )

    assert world.last_upstream("/v1/chat/completions")["body"]["tools"] == [custom]
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="test/claude",
            tools=[custom],
            messages=[{"role": "user", "content": "Hi"}],  # type: ignore[list-item]
        )
    assert raised.value.body["param"] == "tools"  # type: ignore[index]
    assert "OpenAI-style" in raised.value.body["message"]  # type: ignore[index]
    assert world.upstream_requests("/v1/messages") == []


@pytest.mark.parametrize(("model", "path", "expected"), PDF_AS_SENT)
def test_a_pdf_file_part_reaches_each_provider_in_its_format(
    world: World, model: str, path: str, expected: dict[str, Any]
) -> None:
    file = {"type": "file", "file": {"file_data": PDF, "filename": "report.pdf"}}
    world.openai_client().chat.completions.create(model=model, messages=_ask(**file))  # type: ignore[arg-type]

    sent = world.last_upstream(path)["body"]
    turns = sent.get("messages") or sent.get("contents")
    assert expected in (turns[-1].get("content") or turns[-1].get("parts"))


def test_audio_reaches_gemini_inline_and_is_refused_for_anthropic(world: World) -> None:
    audio = {"type": "input_audio", "input_audio": {"data": AUDIO, "format": "wav"}}
    client = world.openai_client()
    client.chat.completions.create(model="test/gemini", messages=_ask(**audio))  # type: ignore[arg-type]

    parts = world.last_upstream(":generateContent")["body"]["contents"][-1]["parts"]
    assert {"inlineData": {"mimeType": "audio/wav", "data": AUDIO}} in parts
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="test/claude", messages=_ask(**audio))  # type: ignore[arg-type]
    assert raised.value.body["param"] == "messages"  # type: ignore[index]
    assert "input_audio" not in str(world.upstream_requests("/v1/messages"))


@pytest.mark.parametrize("model", ["test/claude", "test/gemini"])
def test_a_file_id_only_its_host_knows_is_refused(world: World, model: str) -> None:
    file = {"type": "file", "file": {"file_id": "file-abc123"}}
    with pytest.raises(openai.BadRequestError) as raised:
        world.openai_client().chat.completions.create(model=model, messages=_ask(**file))  # type: ignore[arg-type]

    assert "file_data" in raised.value.body["message"]  # type: ignore[index]
    assert world.upstream_requests() == []


@pytest.mark.parametrize(("model", "path", "expected"), PDF_AS_SENT)
def test_a_pdf_document_block_reaches_each_provider(
    world: World, model: str, path: str, expected: dict[str, Any]
) -> None:
    document = {
        "type": "document",
        "title": "report.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
    }
    world.anthropic_client().messages.create(
        model=model,
        max_tokens=50,
        messages=_ask(**document),  # type: ignore[arg-type]
    )

    sent = world.last_upstream(path)["body"]
    turns = sent.get("messages") or sent.get("contents")
    assert expected in (turns[-1].get("content") or turns[-1].get("parts"))


def test_a_text_document_block_is_sent_as_text(world: World) -> None:
    document = {
        "type": "document",
        "title": "Notes",
        "source": {"type": "text", "media_type": "text/plain", "data": "The launch is on Friday."},
    }
    world.anthropic_client().messages.create(
        model="test/gpt",
        max_tokens=50,
        messages=_ask(**document),  # type: ignore[arg-type]
    )

    content = world.last_upstream("/v1/chat/completions")["body"]["messages"][-1]["content"]
    assert {"type": "text", "text": "Notes\n\nThe launch is on Friday."} in content


@pytest.mark.parametrize(("request_part", "named"), [
    ({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]},
     "web_search_20250305"),
    ({"messages": _ask(type="search_result", source="https://example.com", title="t",
                       content=[{"type": "text", "text": "x"}])}, "search_result"),
    ({"messages": _ask(type="document", source={"type": "url", "url": "https://example.com/a.pdf"})},
     "'url' source"),
    ({"messages": _ask(type="image", source={"type": "file", "file_id": "file_011"})},
     "'file' source"),
])  # fmt: skip
def test_what_messages_cannot_translate_is_refused_naming_it(
    world: World, request_part: dict[str, Any], named: str
) -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "Hi"}]} | request_part
    with pytest.raises(anthropic.BadRequestError) as raised:
        world.anthropic_client().messages.create(model="test/claude", max_tokens=50, **body)

    assert raised.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert named in raised.value.body["error"]["message"]  # type: ignore[index]
    assert world.upstream_requests() == []


def test_the_anthropic_sdk_lists_and_retrieves_models(world: World) -> None:
    client = world.anthropic_client()

    listed = list(client.models.list())
    one = client.models.retrieve("test/claude")

    assert {"test/gpt", "test/claude", "test/gemini"} <= {model.id for model in listed}
    assert all(model.type == "model" and model.created_at.year == 1970 for model in listed)
    assert (one.id, one.display_name) == ("test/claude", "test/claude")
    page = client.models.list()
    assert (page.has_more, page.first_id, page.last_id) == (False, listed[0].id, listed[-1].id)


@pytest.mark.parametrize("model", ["test/gpt", "test/claude", "test/gemini"])
def test_a_screenshot_in_a_tool_result_reaches_the_model(world: World, model: str) -> None:
    png = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    tool = {"name": "screenshot", "description": "Take one", "input_schema": {"type": "object"}}
    world.anthropic_client().messages.create(
        model=model,
        max_tokens=50,
        tools=[tool],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "What is on the screen?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "screenshot", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                {"type": "text", "text": "Taken."}, {"type": "image", "source": png}]}]},
        ],  # type: ignore[list-item]
    )  # fmt: skip

    sent = str(world.last_upstream()["body"])
    assert "Taken." in sent and "iVBORw0KGgo=" in sent


@pytest.mark.parametrize(("options", "param"), [
    ({"web_search_options": {}}, "web_search_options"),
    ({"extra_body": {"plugins": [{"id": "web", "max_results": 3}]}}, "plugins"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"modalities": ["audio"]}, "modalities"),
])  # fmt: skip
def test_web_search_and_audio_output_are_refused_not_dropped(
    world: World, options: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        world.openai_client().chat.completions.create(
            model="test/gpt", messages=[{"role": "user", "content": "Hi"}], **options
        )

    assert raised.value.body["param"] == param  # type: ignore[index]
    assert "not offered" in raised.value.body["message"]  # type: ignore[index]
    assert world.upstream_requests() == []
