"""The OpenAI-format answer shapes beyond a plain string ``content`` that hosts send, so the
gateway's reading of them is tested over HTTP (``wire.openai_response`` and ``openai_stream``).

A model whose name says ``magistral`` answers as Mistral's Magistral models do: ``content`` is
a list of chunks, a ``thinking`` chunk (its ``thinking`` a list of text chunks, Mistral's
``ThinkChunk``) before the ``text`` chunk, whole and streamed. ``x@shape=<name>`` reshapes a
whole answer's message: ``parts`` (text parts), ``refusal`` (no content, a ``refusal``; streamed
too, as ``refusal`` deltas),
``reasoned_refusal`` (a refusal after ``reasoning``), ``custom_call`` (an OpenAI custom tool call, no ``function``), ``object_args`` (Mistral's
tool call arguments an object), ``null_text`` (a text part's text null), ``number_refusal``, ``list_reasoning``,
``number_finish`` (a finish_reason 1) and ``string_choice`` (a choice that is a string), ``object`` (content an object)
and ``bad_call`` (a tool call's function a string) — the last two
are outside every wire format (a broken host)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

JSON = dict[str, Any]

REFUSAL = "I can't help with that request."
SQL = "SELECT name FROM owls WHERE wingspan > 1.5"


def thought_of(text: str) -> str:
    """The fake's reasoning before ``text``: deterministic, a few tokens."""
    return f"The user wants {len(text.split())} words; answer plainly."


def is_magistral(model: str) -> bool:
    return "magistral" in model


def thinking_part(text: str) -> JSON:
    """Mistral's thinking chunk before the answer ``text``."""
    return {"type": "thinking", "thinking": [{"type": "text", "text": thought_of(text)}]}


def magistral_parts(text: str) -> list[JSON]:
    return [thinking_part(text), {"type": "text", "text": text}]


def message_shaped(message: JSON, shape: str) -> JSON:
    """A whole answer's ``message`` as ``x@shape=`` has it."""
    text = message.get("content")
    if shape == "parts" and isinstance(text, str):
        return message | {"content": [{"type": "text", "text": text}]}
    if shape == "refusal":
        return message | {"content": None, "refusal": REFUSAL}
    if shape == "reasoned_refusal":  # a reasoning model's refusal: its reasoning kept
        return message | {"content": None, "reasoning": thought_of(REFUSAL), "refusal": REFUSAL}
    if shape == "object":
        return message | {"content": {"type": "text", "text": text}}
    if shape == "custom_call":  # OpenAI's custom tool call: free-form input, no function
        call = {"id": "call_1", "type": "custom", "custom": {"name": "run_sql", "input": SQL}}
        return message | {"content": None, "tool_calls": [call]}
    if shape == "object_args":  # Mistral: a tool call's arguments an object
        function = {"name": "get_weather", "arguments": {"city": "Oslo"}}
        call = {"id": "call_1", "type": "function", "function": function}
        return message | {"content": None, "tool_calls": [call]}
    if shape == "null_text":  # a text part whose text is null
        return message | {"content": [{"type": "text", "text": None}]}
    if shape == "number_refusal":
        return message | {"refusal": 5}
    if shape == "list_reasoning":
        return message | {"reasoning": ["a", "b"]}
    if shape == "object_reasoning_content":  # DeepSeek's/vLLM's name, an empty object
        return message | {"reasoning_content": {}}
    if shape == "bad_call":  # a function that is no object
        return message | {"tool_calls": [{"id": "call_1", "type": "function", "function": "f"}]}
    return message


def stream_shaped(events: Iterator[bytes], shape: str) -> Iterator[bytes]:
    """A streamed answer as ``x@shape=`` has it: ``refusal`` streams ``REFUSAL`` as ``refusal``
    deltas (two pieces) in place of the text, as OpenAI streams a refusal."""
    said = False
    for event in events:
        if shape != "refusal" or not event.startswith(b"data: {"):
            yield event
            continue
        data = orjson.loads(event.removeprefix(b"data: "))
        choice = (data.get("choices") or [{}])[0]
        if "content" not in (choice.get("delta") or {}):
            yield event
            continue
        if not said:
            said, half = True, len(REFUSAL) // 2
            for piece in (REFUSAL[:half], REFUSAL[half:]):
                choice["delta"] = {"refusal": piece}
                yield b"data: " + orjson.dumps(data) + b"\n\n"


def whole_shaped(whole: JSON, shape: str) -> JSON:
    """A whole answer as ``x@shape=`` has it, its message reshaped (``message_shaped``) or,
    for ``number_finish`` and ``string_choice``, its choice."""
    choice = whole["choices"][0]
    if shape == "number_finish":
        return whole | {"choices": [choice | {"finish_reason": 1}]}
    if shape == "string_choice":
        return whole | {"choices": ["stop"]}
    return whole | {"choices": [choice | {"message": message_shaped(choice["message"], shape)}]}
