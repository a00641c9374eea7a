"""What the fake's Anthropic wire refuses with a 400 ``invalid_request_error``: malformed
``thinking``, and a tool result's ``is_error`` that is no boolean even read leniently.

Anthropic's messages are pydantic's ("Input should be a valid boolean"); its validation is taken
to be pydantic's lax mode, which reads "true", 1, "no", … as booleans (``lax_bool``), so the fake
accepts those too. RouterHub's own 400 on any ``is_error`` that is not ``true``/``false``
(``routing.ingress.anthropic_checks``) is its stricter contract, not Anthropic's.

Also the answer Anthropic's classifiers stop (``x@shape=refusal`` on the Anthropic wire):
``stop_reason: refusal``, whole and streamed (``stopped_as_refusal``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

JSON = dict[str, Any]


# pydantic's lax-mode reading of a boolean (strings case-insensitively; ints and floats 0 and 1).
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def lax_bool(value: object) -> bool | None:
    """``value`` as pydantic's lax mode reads a boolean; None where it refuses it."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return value == 1
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    return None


def _is_error_refusal(body: JSON) -> str | None:
    """A ``tool_result`` whose ``is_error`` is there but no boolean even read leniently."""
    for i, message in enumerate(body.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        for j, block in enumerate(content if isinstance(content, list) else []):
            result = isinstance(block, dict) and block.get("type") == "tool_result"
            failed = block.get("is_error") if result else None
            if failed is not None and lax_bool(failed) is None:
                where = f"messages.{i}.content.{j}.tool_result.is_error"
                parsed = isinstance(failed, int | float | str) and not isinstance(failed, bool)
                unable = ", unable to interpret input" if parsed else ""
                return f"{where}: Input should be a valid boolean{unable}"
    return None


def anthropic_refusal(body: JSON) -> str | None:
    """What the fake answers 400 ``invalid_request_error`` to in ``thinking`` and in a tool
    result's ``is_error``, in Anthropic's words."""
    refused = _is_error_refusal(body)
    if refused is not None:
        return refused
    thinking = body.get("thinking")
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or thinking.get("type") not in (
        "enabled",
        "adaptive",
        "disabled",
    ):
        return "thinking: Input tag does not match any of the expected tags"
    budget, max_tokens = thinking.get("budget_tokens"), body.get("max_tokens")
    if thinking["type"] != "enabled":
        return None
    if not isinstance(budget, int) or budget < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if isinstance(max_tokens, int) and budget >= max_tokens:
        return "`max_tokens` must be greater than `thinking.budget_tokens`"
    return None


def stopped_as_refusal(whole: JSON, events: Iterator[bytes]) -> tuple[JSON, Iterator[bytes]]:
    """An answer and its stream as Anthropic sends them when it stops one as a refusal: the
    text so far, then ``stop_reason: refusal``."""

    def stream() -> Iterator[bytes]:
        for event in events:
            if not event.startswith(b"event: message_delta\n"):
                yield event
                continue
            head, _, data = event.partition(b"\ndata: ")
            payload = orjson.loads(data)
            payload["delta"] |= {"stop_reason": "refusal", "stop_sequence": None}
            yield head + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    return whole | {"stop_reason": "refusal", "stop_sequence": None}, stream()
