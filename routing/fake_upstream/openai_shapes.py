"""The OpenAI-format answer shapes beyond a plain string ``content`` that hosts send, so the
gateway's reading of them is tested over HTTP (``wire.openai_response`` and ``openai_stream``).

A model whose name says ``magistral`` answers as Mistral's Magistral models do: ``content`` is
a list of chunks, a ``thinking`` chunk (its ``thinking`` a list of text chunks, Mistral's
``ThinkChunk``) before the ``text`` chunk, whole and streamed. ``x@shape=<name>`` reshapes a
whole answer's message: ``parts`` (text parts), ``refusal`` (no content, a ``refusal``),
``object`` (content an object) and ``bad_call`` (a tool call's function a string) — the last two
are outside every wire format (a broken host)."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

REFUSAL = "I can't help with that request."


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
    if shape == "object":
        return message | {"content": {"type": "text", "text": text}}
    if shape == "bad_call":  # a function that is no object
        return message | {"tool_calls": [{"id": "call_1", "type": "function", "function": "f"}]}
    return message
