"""An ``allowed_tools`` tool choice refused with a 400 naming the field whatever its shape, and
``/v1/responses/input_tokens`` counting what ``/v1/responses`` would send: the allowed tools
only, ``text.format``'s schema, ``instructions`` or stored turns without ``input``."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.factories import key_make, organization_make
from tests.routing.test_clients_patterns import FLAT_WEATHER, WEATHER
from tests.routing.world import World

HELLO = [{"role": "user", "content": "Hello"}]
CLOCK: Any = {"type": "function", "function": WEATHER["function"] | {"name": "get_time"}}


def _post(world: World, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{world.gateway_url}{path}", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {world.key}"})  # fmt: skip


def _chat_choice(*tools: Any, mode: str = "auto") -> dict[str, Any]:
    return {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": list(tools)}}


def test_a_malformed_allowed_tools_choice_is_a_400_naming_the_field(world: World) -> None:
    """A list or an object as a type or name was a 500 (unhashable); a bad tool the choice
    leaves out was dropped unseen (a 200); a built-in tool named got the generic message."""
    chat = {"model": "test/gpt", "messages": HELLO, "tools": [WEATHER, CLOCK]}
    refused: list[tuple[str, dict[str, Any], str]] = [
        ("/v1/chat/completions", chat | {"tool_choice": _chat_choice(
            {"type": "function", "function": {"name": ["a"]}})}, "tool_choice"),
        ("/v1/chat/completions", chat | {"tool_choice": _chat_choice(
            {"type": ["function"], "function": {"name": "get_time"}})}, "tool_choice"),
        ("/v1/chat/completions", chat | {"tools": [WEATHER, {"type": {}}], "tool_choice":
            _chat_choice({"type": "function", "function": {"name": "get_weather"}})}, "tools"),
        ("/v1/chat/completions", chat | {"tools": [WEATHER, {"type": "function"}], "tool_choice":
            _chat_choice({"type": "function", "function": {"name": "get_weather"}})}, "tools"),
        ("/v1/chat/completions", chat | {"tool_choice": _chat_choice(
            {"type": "custom", "custom": {"name": "get_time"}})}, "tool_choice"),
        ("/v1/responses", {"model": "test/gpt", "input": "Hi", "tools": [FLAT_WEATHER],
            "tool_choice": {"type": "allowed_tools", "mode": "auto",
                            "tools": [{"type": "function", "name": {"x": 1}}]}}, "tool_choice"),
    ]  # fmt: skip
    builtin = chat | {"tool_choice": _chat_choice({"type": "image_generation"})}

    for path, body, param in refused:
        answer = _post(world, path, body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"]["param"] == param, answer.text
    answer = _post(world, "/v1/chat/completions", builtin)
    assert answer.status_code == 400
    assert "only function and custom tools" in answer.json()["error"]["message"]
    assert world.upstream_requests() == []


def test_the_input_tokens_count_sees_the_allowed_tools_and_the_format(world: World) -> None:
    """The count took every tool and a bad mode (200) and left text.format's schema out."""
    base = {"model": "test/gpt", "input": "Hi there"}
    flat_clock = {"type": "function", **CLOCK["function"]}
    both = base | {"tools": [FLAT_WEATHER, flat_clock]}
    allowed = {"type": "allowed_tools", "mode": "auto",
               "tools": [{"type": "function", "name": "get_time"}]}  # fmt: skip
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    text = {"format": {"type": "json_schema", "name": "city", "schema": schema}}

    def count(body: dict[str, Any]) -> int:
        answer = _post(world, "/v1/responses/input_tokens", body)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["input_tokens"])

    narrowed = count(both | {"tool_choice": allowed})
    assert narrowed == count(base | {"tools": [flat_clock], "tool_choice": "auto"})
    assert narrowed < count(both)
    assert count(base | {"text": text}) > count(base)
    bad_mode = _post(world, "/v1/responses/input_tokens",
                     both | {"tool_choice": allowed | {"mode": "sometimes"}})  # fmt: skip
    assert bad_mode.status_code == 400 and bad_mode.json()["error"]["param"] == "tool_choice"


def test_the_input_tokens_count_takes_instructions_or_stored_turns_alone(world: World) -> None:
    """``input`` is optional in the SDK: a count of instructions alone was a 400."""
    client = world.openai_client()
    stored = client.responses.create(model="test/gpt", input="Tell me about tea")
    counted = client.responses.input_tokens.count

    assert counted(model="test/gpt", instructions="Be brief.").input_tokens > 0
    assert counted(model="test/gpt", previous_response_id=stored.id).input_tokens > 0
    with pytest.raises(openai.BadRequestError) as refused:
        counted(model="test/gpt")
    assert refused.value.body["param"] == "input"  # type: ignore[index]


def test_the_count_refuses_another_organizations_response_and_a_get(world: World) -> None:
    stored = world.openai_client().responses.create(model="test/gpt", input="secret")
    other = world.openai_client(key_make(organization_make(name="Other")))

    with pytest.raises(openai.NotFoundError):
        other.responses.input_tokens.count(input="Hi", previous_response_id=stored.id)
    got = httpx.get(f"{world.gateway_url}/v1/responses/input_tokens", timeout=10,
                    headers={"Authorization": f"Bearer {world.key}"})  # fmt: skip
    assert got.status_code == 405
