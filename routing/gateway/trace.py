"""What the generation page shows of a request beyond its bill: the routing decision, the
fallbacks tried and (for organizations that opted into prompt logging) the answer's text."""

from __future__ import annotations

from typing import Any

import orjson

from routing.providers.base import text_of

JSON = dict[str, Any]
MAX_RESPONSE_CHARS = 100_000  # what a usage record keeps of one answer


def trace_json(routing: JSON | None, fallbacks: list[JSON]) -> str:
    """The usage record's ``trace``: JSON text, empty when there is nothing to tell."""
    if routing is None and not fallbacks:
        return ""
    return orjson.dumps({"routing": routing, "fallbacks": fallbacks}).decode()


def answer_text(choices: list[JSON]) -> str:
    """A whole answer's text (the first choice's), capped at ``MAX_RESPONSE_CHARS``."""
    if not choices:
        return ""
    message = choices[0].get("message") or {}
    return text_of(message.get("content"))[:MAX_RESPONSE_CHARS]


def delta_texts(choices: list[JSON]) -> list[str]:
    """The text a stream chunk adds to the first choice's answer."""
    return [
        str((c.get("delta") or {}).get("content") or "")
        for c in choices
        if int(c.get("index") or 0) == 0
    ]
