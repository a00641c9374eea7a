"""Hypothesis-generated bodies for ``/v1/embeddings``, ``/v1/completions`` and ``/v1/responses``,
over real HTTP:
each is served (200) or refused with a 4xx in API.md's error format — never a 5xx. Same
settings as ``test_inference_fuzz`` (fixed examples in CI; ``FUZZ_RANDOM=1`` explores)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.routing.world import World, base_catalog, endpoint, model
from tests.security.test_inference_fuzz import (
    CHAT_FIELDS,
    FUZZ,
    JSON,
    MODEL,
    NUMBERS,
    TEXT,
    TOOL,
    _check,
    _send,
    mostly,
)

TOKENS = st.lists(st.integers(min_value=-5, max_value=2**40), max_size=6)
INPUT = mostly(
    TEXT | st.lists(TEXT, min_size=1, max_size=4) | TOKENS | st.lists(TOKENS, max_size=3),
    JSON | st.lists(TEXT | TOKENS | JSON, max_size=4),
)
EMBEDDING_FIELDS = {
    "encoding_format": st.sampled_from(["float", "base64"]) | JSON,
    "dimensions": NUMBERS,
    "user": TEXT | JSON,
    "models": st.lists(st.sampled_from(["test/embed", "test/gpt"]) | TEXT, max_size=3) | JSON,
    "provider": st.fixed_dictionaries({}, optional={"order": JSON, "only": JSON}) | JSON,
}
COMPLETION_FIELDS = CHAT_FIELDS | {
    "echo": st.booleans() | JSON,
    "suffix": TEXT | JSON,
    "logprobs": NUMBERS,
    "best_of": NUMBERS,
}

RESPONSE_PART = st.fixed_dictionaries(
    {"type": st.sampled_from(["input_text", "output_text", "input_image", "input_file"]) | TEXT},
    optional={"text": TEXT | JSON, "image_url": TEXT | JSON, "detail": TEXT | JSON},
)
RESPONSE_ITEM = mostly(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "developer"]),
                           "content": TEXT | st.lists(RESPONSE_PART, max_size=3)}),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning",
                                  "item_reference"]) | TEXT},
        optional={"role": TEXT | JSON, "content": JSON | st.lists(RESPONSE_PART, max_size=2),
                  "call_id": TEXT | JSON, "name": TEXT | JSON, "arguments": TEXT | JSON,
                  "output": TEXT | JSON | st.lists(RESPONSE_PART, max_size=2)},
    ),
)  # fmt: skip
RESPONSE_TOOL = mostly(
    st.fixed_dictionaries({"type": st.just("function"), "name": TEXT},
                          optional={"parameters": JSON, "description": TEXT | JSON}),
    TOOL | JSON,
)  # fmt: skip
RESPONSE_FIELDS = {
    name: CHAT_FIELDS[name]
    for name in ("temperature", "top_p", "stream", "user", "models", "provider", "metadata")
} | {
    "instructions": TEXT | JSON,
    "tools": st.lists(RESPONSE_TOOL, max_size=3) | JSON,
    "tool_choice": st.sampled_from(["auto", "none", "required"]) | JSON,
    "text": st.fixed_dictionaries({"format": JSON | st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "json_object", "json_schema"]) | TEXT},
        optional={"name": TEXT | JSON, "schema": JSON})}) | JSON,
    "max_output_tokens": NUMBERS,
    "reasoning": st.fixed_dictionaries({}, optional={"effort": TEXT | JSON}) | JSON,
    "previous_response_id": TEXT | st.none(),
    "store": st.booleans() | JSON,
    "parallel_tool_calls": st.booleans() | JSON,
}  # fmt: skip


@pytest.fixture
def embed_world(world: World) -> World:
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/embed", ["embeddings"]))
    data["endpoints"] += [endpoint("test/embed", "fake-openai", "text-embedding-3-small", "0.02", "0"),
                          endpoint("test/embed", "fake-gemini", "gemini-embedding-001", "0.15", "0")]  # fmt: skip
    world.catalog(data)
    return world


@st.composite
def embedding_bodies(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    body: dict[str, Any] = {
        "model": draw(mostly(st.just("test/embed"), st.sampled_from(["test/gpt", "x"]) | JSON)),
        "input": draw(INPUT),
    }
    for name in draw(st.lists(st.sampled_from(sorted(EMBEDDING_FIELDS)), max_size=3, unique=True)):
        body[name] = draw(EMBEDDING_FIELDS[name])
    return body


@st.composite
def completion_bodies(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    prompt = mostly(TEXT | st.lists(TEXT, min_size=1, max_size=2), JSON | TOKENS)
    body: dict[str, Any] = {
        "model": draw(mostly(st.just("test/gpt"), JSON)),
        "prompt": draw(prompt),
    }
    for name in draw(st.lists(st.sampled_from(sorted(COMPLETION_FIELDS)), max_size=4, unique=True)):
        body[name] = draw(COMPLETION_FIELDS[name])
    return body


@st.composite
def response_bodies(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    body: dict[str, Any] = {
        "model": draw(MODEL),
        "input": draw(mostly(TEXT | st.lists(RESPONSE_ITEM, min_size=1, max_size=4), JSON)),
    }
    for name in draw(st.lists(st.sampled_from(sorted(RESPONSE_FIELDS)), max_size=4, unique=True)):
        body[name] = draw(RESPONSE_FIELDS[name])
    return body


@FUZZ
@given(body=embedding_bodies())
def test_any_embeddings_body_is_served_or_refused_with_a_4xx(embed_world: World, body: Any) -> None:
    _check(_send(embed_world, "/v1/embeddings", body), anthropic=False)


@FUZZ
@given(body=completion_bodies())
def test_any_completions_body_is_served_or_refused_with_a_4xx(world: World, body: Any) -> None:
    _check(_send(world, "/v1/completions", body), anthropic=False)


@FUZZ
@given(body=response_bodies())
def test_any_responses_body_is_served_or_refused_with_a_4xx(world: World, body: Any) -> None:
    response = _send(world, "/v1/responses", body)
    _check(response, anthropic=False)
    assert "No route matches" not in response.text  # the endpoint's own answer, not the router's
