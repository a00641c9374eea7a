"""A failed tool's result (``tool_result`` with ``is_error: true``) sent with the official
``anthropic`` SDK reaches each provider the way its own wire says "the tool failed": Anthropic
gets ``is_error`` back, Gemini a ``functionResponse`` under ``error``, OpenAI-style hosts (no
such field) the text marked "Error: "."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from tests.routing.world import World

TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def conversation(result: dict[str, Any]) -> list[Any]:
    """A question, the model's tool call, and the tool's result (``result``'s fields)."""
    return [
        {"role": "user", "content": "What is the weather in Madrid?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Madrid"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"} | result]},
    ]  # fmt: skip


def ask(world: World, model: str, result: dict[str, Any]) -> anthropic.types.Message:
    client = world.anthropic_client()
    return client.messages.create(
        model=model, max_tokens=200, tools=[TOOL], messages=conversation(result)
    )  # type: ignore[arg-type]


def last_turn(world: World, path: str) -> Any:
    body = world.last_upstream(path)["body"]
    return body["contents" if path == ":generateContent" else "messages"][-1]


def test_a_failed_tool_result_reaches_claude_as_is_error(world: World) -> None:
    message = ask(world, "test/claude", {"content": "city not found", "is_error": True})

    assert last_turn(world, "/v1/messages") == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "city not found",
         "is_error": True}]}  # fmt: skip
    assert message.content[0].text == "Based on the tool result: Error: city not found"  # type: ignore[union-attr]


def test_a_tool_result_that_did_not_fail_reaches_claude_without_the_flag(world: World) -> None:
    ask(world, "test/claude", {"content": "sunny", "is_error": False})
    ask(world, "test/claude", {"content": [{"type": "text", "text": "sunny"}]})

    first, second = world.upstream_requests("/v1/messages")[-2:]
    for sent in (first, second):
        [block] = sent["body"]["messages"][-1]["content"]
        assert block == {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}


def test_a_failed_tool_result_reaches_gemini_under_error(world: World) -> None:
    ask(world, "test/gemini", {"content": "city not found", "is_error": True})
    ask(world, "test/gemini", {"content": '{"code": 404, "reason": "no city"}', "is_error": True})

    first, second = world.upstream_requests(":generateContent")[-2:]
    responses = [sent["body"]["contents"][-1]["parts"][0] for sent in (first, second)]
    assert responses == [
        {"functionResponse": {"name": "get_weather", "response": {"error": "city not found"}}},
        {"functionResponse": {"name": "get_weather",
                              "response": {"error": {"code": 404, "reason": "no city"}}}},
    ]  # fmt: skip


def test_a_failed_tool_result_reaches_openai_style_hosts_as_marked_text(world: World) -> None:
    ask(world, "test/gpt", {"content": "city not found", "is_error": True})

    assert last_turn(world, "/v1/chat/completions") == {
        "role": "tool",
        "tool_call_id": "toolu_1",
        "content": "Error: city not found",
    }


@pytest.mark.parametrize("flag", ["true", 1, {"yes": True}])
def test_routerhub_refuses_an_is_error_that_is_not_true_or_false_naming_the_field(
    world: World, flag: Any
) -> None:
    """RouterHub's contract, stricter than Anthropic's lenient reading (the fake's, below): a
    flag that decides whether the model is told its tool failed must be a JSON boolean."""
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask(world, "test/claude", {"content": "city not found", "is_error": flag})

    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
    assert "messages[2].content[0].is_error must be a boolean" in body["error"]["message"]
    assert not world.upstream_requests("/v1/messages")


def test_the_fake_upstream_reads_is_error_leniently_as_pydantic_does(world: World) -> None:
    """Anthropic validates with pydantic (its messages are pydantic's), taken to be lax: "true"
    and 1 are read as true, what no boolean reading fits is a 400."""

    def post(flag: Any) -> httpx.Response:
        messages = conversation({"content": "no city", "is_error": flag})
        body = {"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": messages}
        return httpx.post(f"{world.fake_url}/v1/messages", json=body)

    refused = {flag: post(flag) for flag in ("maybe", 2)} | {"object": post({"yes": True})}
    accepted = [post(flag) for flag in (True, "true", "TRUE", 1)] + [post("no"), post(0)]

    where = "messages.2.content.0.tool_result.is_error"
    assert {flag: (r.status_code, r.json()["error"]) for flag, r in refused.items()} == {
        flag: (400, {"type": "invalid_request_error", "message": message})
        for flag, message in [
            ("maybe", f"{where}: Input should be a valid boolean, unable to interpret input"),
            (2, f"{where}: Input should be a valid boolean, unable to interpret input"),
            ("object", f"{where}: Input should be a valid boolean"),
        ]
    }
    assert [r.json()["content"][0]["text"] for r in accepted] == [
        "Based on the tool result: Error: no city"
    ] * 4 + ["Based on the tool result: no city"] * 2
