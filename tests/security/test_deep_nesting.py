"""A body nested deeper than the gateway can write back out (orjson reads 1024 levels, writes 255)
is a 400 naming the limit before anything is held or sent, over real HTTP, and so is an API body
(``/api/v1``); a deep but reasonable schema (60 levels) is still served. Before the limit, 400 levels inside ``tools``,
``response_format`` or ``metadata`` were a 500 (one of them after the credit hold)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from accounts.models import KeyScope
from billing.models import CreditHold, UsageRecord
from routerhub.body_limits import MAX_JSON_DEPTH, nested_deeper_than
from routing.models import Pipeline
from tests.factories import key_client
from tests.routing.world import World
from tests.security.test_hostile_input import assert_error, chat_body, messages_body, post


def _schema(levels: int) -> dict[str, Any]:
    """A JSON schema object-in-object ``levels`` JSON levels deep (two per property)."""
    value: dict[str, Any] = {"type": "string"}
    for _ in range(levels // 2):
        value = {"type": "object", "properties": {"a": value}}
    return value


def _bodies(levels: int) -> dict[str, tuple[str, dict[str, Any]]]:
    schema = _schema(levels)
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    json_schema = {"name": "x", "schema": schema}
    responses_tool = {"type": "function", "name": "f", "parameters": schema}
    return {
        "chat-tools": ("/v1/chat/completions", chat_body(tools=[tool])),
        "chat-response-format": (
            "/v1/chat/completions",
            chat_body(response_format={"type": "json_schema", "json_schema": json_schema}),
        ),
        "chat-metadata": ("/v1/chat/completions", chat_body(metadata={"a": schema})),
        "messages-tools": (
            "/v1/messages",
            messages_body(tools=[{"name": "f", "input_schema": schema}]),
        ),
        "responses-tools": (
            "/v1/responses",
            {"model": "test/gpt", "input": "hi", "tools": [responses_tool]},
        ),
    }


def _encoded(body: dict[str, Any]) -> bytes:
    # The stdlib json writes 400 levels where orjson (255) would not: a client can send them.
    return json.dumps(body).encode()


def test_a_body_nested_past_the_limit_is_a_400_before_any_hold_or_upstream_call(
    world: World,
) -> None:
    wrong = []
    for name, (path, body) in _bodies(400).items():
        response = post(world, path, _encoded(body))
        try:
            error = assert_error(response, 400, anthropic=path == "/v1/messages")
            assert f"more than {MAX_JSON_DEPTH} levels" in error["message"]
        except (AssertionError, ValueError, KeyError):
            wrong.append(f"{name}: {response.status_code} {response.text[:200]}")

    assert wrong == []
    assert world.upstream_requests() == []
    assert not UsageRecord.objects.exists()
    assert not CreditHold.objects.filter(held__gt=0).exists()


def test_a_deep_but_reasonable_schema_is_served(world: World) -> None:
    served = {}
    for name, (path, body) in _bodies(60).items():
        served[name] = post(world, path, _encoded(body)).status_code

    assert served == dict.fromkeys(served, 200)


@pytest.mark.parametrize(
    ("raw_levels", "deeper"),
    [(MAX_JSON_DEPTH, False), (MAX_JSON_DEPTH + 1, True), (1000, True)],
)
def test_the_depth_counts_every_array_and_object_level(raw_levels: int, deeper: bool) -> None:
    raw = b'{"a": ' + b"[" * (raw_levels - 1) + b"]" * (raw_levels - 1) + b"}"

    assert nested_deeper_than(raw, orjson.loads(raw), MAX_JSON_DEPTH) is deeper


def test_brackets_inside_strings_never_make_a_flat_body_too_deep() -> None:
    raw = orjson.dumps({"messages": [{"role": "user", "content": "[{" * 5000}]})

    assert nested_deeper_than(raw, orjson.loads(raw), MAX_JSON_DEPTH) is False


def test_an_api_body_nested_past_the_limit_is_a_400_and_stores_nothing(world: World) -> None:
    """The API's JSON parser (Python's json reads ~1000 levels) refuses the same depth: a pipeline
    gate's 400-level schema was a 500 (its size check writes it with orjson), and a step's
    400-level ``response_format`` was stored, a pipeline failing every call."""
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    schema = _schema(400)
    steps = {
        "gate": {"model": "test/gpt", "gate": {"type": "json_schema", "schema": schema}},
        "response-format": {
            "model": "test/gpt",
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema},
            },
        },
    }
    answers = {}
    for name, step in steps.items():
        body = {"slug": f"deep-{name}", "kind": "cascade", "steps": [step, {"model": "test/gpt"}]}
        response = admin.generic(
            "POST", "/api/v1/pipelines", _encoded(body), content_type="application/json"
        )
        message = response.json()["error"]["message"]
        answers[name] = (response.status_code, f"more than {MAX_JSON_DEPTH} levels" in message)

    assert answers == dict.fromkeys(steps, (400, True))
    assert not Pipeline.objects.exists()


@pytest.mark.parametrize("raw", [b"5", b'"text"', b"null", b"[]"])
def test_a_body_that_is_no_object_is_never_too_deep(raw: bytes) -> None:
    # The API's parser reads any JSON value; the views then say what they need.
    assert nested_deeper_than(None, orjson.loads(raw), MAX_JSON_DEPTH) is False
