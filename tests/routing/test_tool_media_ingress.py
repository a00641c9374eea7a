"""Media a tool returned, as each ingress carries it to each wire: a ``/v1/messages``
``tool_result``'s images stay in it for Claude and move to a user message after the tool results
only for OpenAI-style hosts and Gemini (``routing.providers.tool_media``); a ``/v1/responses``
``function_call_output``'s ``input_image`` and ``input_file`` parts take the same path. Served
through the ``anthropic`` and ``openai`` SDKs against the fake upstream."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.routing.test_gateway_media_input import PNG, TOOL, _agent_turns
from tests.routing.world import World

_SHOT = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
_FROM_TOOLU_1 = {"type": "text", "text": "[returned by tool call toolu_1]"}


def _messages_sent(world: World, model_id: str) -> dict[str, Any]:
    """``_agent_turns`` sent to ``model_id`` through the ``anthropic`` SDK: the upstream body."""
    world.anthropic_client().messages.create(
        model=model_id,
        max_tokens=50,
        tools=[TOOL],  # type: ignore[list-item]
        messages=_agent_turns(),  # type: ignore[arg-type]
    )
    body: dict[str, Any] = world.last_upstream()["body"]
    return body


def test_a_tool_result_screenshot_stays_in_claudes_tool_result(world: World) -> None:
    """Before, the ingress moved it into the user turn's own blocks, beside "Go on"."""
    turn = _messages_sent(world, "test/claude")["messages"][2]

    result, *rest = turn["content"]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "toolu_1"
    assert result["content"] == [
        {"type": "text", "text": "Taken."},
        {"type": "image", "source": PNG},
        {"type": "text", "text": "Log."},
    ]
    assert [block["type"] for block in rest] == ["text"] and rest[0]["text"] == "Go on"


def test_a_tool_result_screenshot_follows_the_tool_message_for_openai(world: World) -> None:
    sent = _messages_sent(world, "test/gpt")["messages"]

    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user", "user"]
    assert sent[2]["content"] == [
        {"type": "text", "text": "Taken."},
        {"type": "text", "text": "Log."},
    ]
    assert sent[3]["content"] == [_FROM_TOOLU_1, _SHOT]
    assert sent[4]["content"] == [{"type": "text", "text": "Go on"}]


def test_a_tool_result_screenshot_follows_geminis_function_response(world: World) -> None:
    contents = _messages_sent(world, "test/gemini")["contents"]

    parts = contents[2]["parts"]
    assert [next(iter(part)) for part in parts] == [
        "functionResponse", "text", "inlineData", "text"
    ]  # fmt: skip
    assert parts[1] == {"text": _FROM_TOOLU_1["text"]}
    assert parts[2]["inlineData"] == {"mimeType": "image/png", "data": "iVBORw0KGgo="}


_PDF = "data:application/pdf;base64,JVBERi0xLjQK"
_WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


def _responses_sent(world: World, model_id: str) -> dict[str, Any]:
    """A function call whose output is text, a screenshot and a PDF, sent to ``model_id``
    through the ``openai`` SDK's ``responses.create``: the upstream body."""
    world.openai_client().responses.create(
        model=model_id, tools=[_WEATHER],  # type: ignore[list-item]
        input=[
            {"role": "user", "content": "What is the weather in Oslo?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": [
                {"type": "input_text", "text": "Snow"},
                {"type": "input_image", "image_url": _SHOT["image_url"]["url"]},
                {"type": "input_file", "file_data": _PDF, "filename": "radar.pdf"}]},
        ],
    )  # fmt: skip
    body: dict[str, Any] = world.last_upstream()["body"]
    return body


def test_a_function_call_outputs_image_and_file_stay_in_claudes_tool_result(
    world: World,
) -> None:
    """Before, a 400: a function_call_output held text only."""
    turn = _responses_sent(world, "test/claude")["messages"][2]

    result = turn["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "call_1"
    assert [block["type"] for block in result["content"]] == ["text", "image", "document"]
    assert result["content"][1]["source"] == PNG
    assert result["content"][2]["source"]["data"] == "JVBERi0xLjQK"


def test_a_function_call_outputs_image_and_file_follow_the_tool_message_for_openai(
    world: World,
) -> None:
    sent = _responses_sent(world, "test/gpt")["messages"]

    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert sent[2]["content"] == [{"type": "text", "text": "Snow"}]
    label, image, file = sent[3]["content"]
    assert label == {"type": "text", "text": "[returned by tool call call_1]"}
    assert image["image_url"]["url"] == _SHOT["image_url"]["url"]
    assert file == {"type": "file", "file": {"file_data": _PDF, "filename": "radar.pdf"}}


def test_a_function_call_outputs_image_and_file_follow_geminis_function_response(
    world: World,
) -> None:
    parts = _responses_sent(world, "test/gemini")["contents"][2]["parts"]

    assert [next(iter(part)) for part in parts] == [
        "functionResponse", "text", "inlineData", "inlineData"
    ]  # fmt: skip
    assert parts[0]["functionResponse"]["response"] == {"content": "Snow"}
    assert parts[2]["inlineData"] == {"mimeType": "image/png", "data": "iVBORw0KGgo="}
    assert parts[3]["inlineData"] == {"mimeType": "application/pdf", "data": "JVBERi0xLjQK"}


_NOTES = "Oslo: snow until Friday."


def _document_result_sent(world: World, model_id: str) -> dict[str, Any]:
    """A ``tool_result`` holding the tool's JSON and a text-source document, no image, sent to
    ``model_id`` through the ``anthropic`` SDK: the upstream body."""
    world.anthropic_client().messages.create(
        model=model_id, max_tokens=50, tools=[TOOL],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "screenshot", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                {"type": "text", "text": '{"sky": "snow"}'},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                "data": _NOTES}}]}]},
        ],  # type: ignore[list-item]
    )  # fmt: skip
    body: dict[str, Any] = world.last_upstream()["body"]
    return body


def test_a_tool_results_text_document_reaches_every_provider(world: World) -> None:
    """Before, a tool_result with a text document and no image sent only its text blocks: the
    document's text was dropped for every provider."""
    claude = _document_result_sent(world, "test/claude")["messages"][2]["content"][0]
    assert _NOTES in str(claude["content"])
    gpt = _document_result_sent(world, "test/gpt")["messages"][2]
    assert gpt["role"] == "tool" and _NOTES in str(gpt["content"])
    parts = _document_result_sent(world, "test/gemini")["contents"][2]["parts"]
    # Apart from the tool's JSON, which stays readable: not glued into invalid JSON.
    response = parts[0]["functionResponse"]["response"]
    assert response == {"content": '{"sky": "snow"}\n\n' + _NOTES}


def test_a_function_call_outputs_bad_file_data_is_a_400_naming_the_input_part(
    world: World,
) -> None:
    """Before, the 400 named the chat body made of it (``messages[2].content[1]``)."""
    sent = len(world.upstream_requests())
    with pytest.raises(openai.BadRequestError) as raised:
        world.openai_client().responses.create(
            model="test/gpt", tools=[_WEATHER],  # type: ignore[list-item]
            input=[
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": [
                    {"type": "input_text", "text": "Snow"},
                    {"type": "input_file", "file_data": "JVBERi0xLjQK", "filename": "a.pdf"}]},
            ],
        )  # fmt: skip

    message = raised.value.body["message"]  # type: ignore[index]
    assert "input[1].output[1] is an input_file part" in message and "file_data" in message
    assert "messages[" not in message and len(world.upstream_requests()) == sent
