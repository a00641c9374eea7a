"""Hypothesis-generated request bodies for ``/v1/chat/completions`` and ``/v1/messages``, over real
HTTP to the gateway: well-formed requests with hostile values in every documented field, and
random JSON in their place. Each is served (200) or refused with a 4xx in API.md's error format
(OpenAI's for chat completions, Anthropic's for messages) — never a 5xx, a hang or a crash.

The same examples run every time (CI failures reproduce); ``FUZZ_RANDOM=1 FUZZ_EXAMPLES=500``
explores new ones.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.routing.world import World

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip
TEXT = st.text(max_size=60)
ROLES = st.sampled_from(["user", "assistant", "system", "tool", "developer", "function", ""]) | TEXT
# Inline media as clients send it, well-formed or not: base64 that is valid, unpadded or not
# base64 at all, in data: URLs with any media type, or raw.
BASE64 = st.sampled_from(["JVBERi0xLjQK", "abc", "iVBORw0KGgo=", "%%", ""]) | TEXT
DATA_URL = st.builds(
    lambda t, d: f"data:{t};base64,{d}",
    st.sampled_from(["text/plain", "application/pdf", "image/png", "x"]),
    BASE64,
)
FILE = st.fixed_dictionaries(
    {},
    optional={
        "file_data": DATA_URL | BASE64 | JSON,
        "file_id": TEXT | JSON,
        "filename": TEXT | JSON,
    },
)
AUDIO = st.fixed_dictionaries(
    {}, optional={"data": BASE64 | JSON, "format": st.sampled_from(["wav", "mp3"]) | JSON}
)
CONTENT_PARTS = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image_url", "input_audio", "file", "x"])},
        optional={"text": TEXT | JSON, "image_url": JSON, "file": FILE | JSON,
                  "input_audio": AUDIO | JSON}),
    max_size=3,
)  # fmt: skip
PLAIN_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "user", "assistant", "system"]), "content": TEXT}
)
HOSTILE_MESSAGE = st.fixed_dictionaries(
    {"role": ROLES},
    optional={
        "content": TEXT | CONTENT_PARTS | JSON,
        "name": TEXT,
        "tool_calls": JSON,
        "tool_call_id": TEXT,
    },
)


def mostly(plain: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
    """``plain`` four times in five: mostly well-formed parts, so that hostile values in the
    other fields get past the first checks and reach deeper code."""
    return st.integers(0, 4).flatmap(lambda i: hostile if i == 0 else plain)


CHAT_MESSAGE = mostly(PLAIN_MESSAGE, HOSTILE_MESSAGE)
# One model per provider style, so each adapter translates what the fuzzer sends.
MODEL = mostly(
    st.sampled_from(["test/gpt", "test/claude", "test/gemini"]),
    st.sampled_from(["test/nope", ""]) | JSON,
)
TOOL = st.fixed_dictionaries(
    {"type": st.sampled_from(["function", "web_search"]) | TEXT},
    optional={"function": st.fixed_dictionaries({"name": TEXT}, optional={"parameters": JSON})},
)
NUMBERS = st.integers(min_value=-(2**66), max_value=2**66) | st.floats() | TEXT | st.none()
CHAT_FIELDS = {
    "max_tokens": NUMBERS,
    "max_completion_tokens": NUMBERS,
    "temperature": NUMBERS,
    "top_p": NUMBERS,
    "n": NUMBERS,
    "stream": st.booleans() | JSON,
    "stream_options": JSON,
    "stop": TEXT | st.lists(TEXT, max_size=5) | JSON,
    "tools": st.lists(TOOL, max_size=3) | JSON,
    "tool_choice": st.sampled_from(["auto", "none", "required"]) | JSON,
    "response_format": JSON,
    "user": TEXT | JSON,
    "seed": NUMBERS,
    "logit_bias": JSON,
    "models": st.lists(st.sampled_from(["test/gpt", "test/nope"]) | TEXT, max_size=3) | JSON,
    "provider": st.fixed_dictionaries({}, optional={"max_price": JSON, "order": JSON}) | JSON,
    "router": JSON,
    "metadata": JSON,
}
SOURCE = st.fixed_dictionaries(
    {"type": st.sampled_from(["base64", "text", "url", "content", "file"])},
    optional={"media_type": st.sampled_from(["text/plain", "application/pdf", "image/png"]) | JSON,
              "data": BASE64 | JSON, "url": TEXT | JSON, "content": JSON},
)  # fmt: skip
MEDIA_BLOCK = st.fixed_dictionaries(
    {"type": st.sampled_from(["image", "document", "search_result"])},
    optional={"source": SOURCE | JSON, "title": TEXT | JSON},
)
ANTHROPIC_BLOCK = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "document", "tool_use", "tool_result", "thinking"])
     | TEXT},
    optional={"text": TEXT | JSON, "source": SOURCE | JSON, "input": JSON, "id": TEXT,
              "content": st.lists(MEDIA_BLOCK, max_size=2) | JSON},
)  # fmt: skip
HOSTILE_TURN = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant"]) | TEXT},
    optional={"content": TEXT | st.lists(ANTHROPIC_BLOCK, max_size=3) | JSON},
)
PLAIN_TURN = st.fixed_dictionaries(
    {"role": st.just("user"), "content": st.text(min_size=1, max_size=60)}
)
ANTHROPIC_TURN = mostly(PLAIN_TURN, HOSTILE_TURN)
MESSAGES_FIELDS = {
    "max_tokens": NUMBERS,
    "system": TEXT | st.lists(ANTHROPIC_BLOCK, max_size=2) | JSON,
    "temperature": NUMBERS,
    "top_p": NUMBERS,
    "top_k": NUMBERS,
    "stop_sequences": st.lists(TEXT, max_size=3) | JSON,
    "stream": st.booleans() | JSON,
    "tools": st.lists(JSON, max_size=2) | JSON,
    "tool_choice": JSON,
    "metadata": JSON,
    "thinking": JSON,
}


@st.composite
def chat_bodies(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)  # not a request at all
    body: dict[str, Any] = {
        "model": draw(MODEL),
        "messages": draw(mostly(st.lists(CHAT_MESSAGE, min_size=1, max_size=4), JSON)),
    }
    for name in draw(st.lists(st.sampled_from(sorted(CHAT_FIELDS)), max_size=4, unique=True)):
        body[name] = draw(CHAT_FIELDS[name])
    return body


@st.composite
def messages_bodies(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    body: dict[str, Any] = {
        "model": draw(MODEL),
        "messages": draw(mostly(st.lists(ANTHROPIC_TURN, min_size=1, max_size=4), JSON)),
        "max_tokens": draw(st.integers(1, 64)),
    }
    for name in draw(st.lists(st.sampled_from(sorted(MESSAGES_FIELDS)), max_size=4, unique=True)):
        body[name] = draw(MESSAGES_FIELDS[name])
    return body


FUZZ = hypothesis_settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "80")),
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _send(world: World, path: str, body: Any) -> httpx.Response:
    return httpx.post(
        world.gateway_url + path,
        content=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"},
        timeout=30,
    )


def _check(response: httpx.Response, *, anthropic: bool) -> None:
    status = response.status_code
    event(str(status))
    assert status < 500, response.text[:500]
    assert response.headers["x-request-id"]
    if status == 200:
        return
    body = response.json()
    if anthropic:
        assert body["type"] == "error" and body["error"]["type"] and body["error"]["message"]
    else:
        error = body["error"]
        assert error["code"] == status and error["type"] and error["message"], body
        event(error["message"][:40])


@FUZZ
@given(body=chat_bodies())
def test_any_chat_completion_body_is_served_or_refused_with_a_4xx(world: World, body: Any) -> None:
    _check(_send(world, "/v1/chat/completions", body), anthropic=False)


@FUZZ
@given(body=messages_bodies())
def test_any_messages_body_is_served_or_refused_with_a_4xx(world: World, body: Any) -> None:
    _check(_send(world, "/v1/messages", body), anthropic=True)
