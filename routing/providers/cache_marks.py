"""Prompt-caching marks (``cache_control``) in the canonical (OpenAI) request.

Where they sit, as OpenRouter takes them: on a content part (``{"type": "text", ...,
"cache_control": {"type": "ephemeral"}}``), on a message (its last block is marked), and on a
tool (``{"type": "function", "function": {...}, "cache_control": {...}}``). The Anthropic ingress
puts an Anthropic block's mark in the same places. Only the Anthropic adapter sends them on (in
Anthropic's wire format); ``marks_strip`` takes them off for every other provider.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from routing.providers.base import JSON

MARK = "cache_control"
MAX_BREAKPOINTS = 4  # Anthropic's limit of blocks with cache_control in one request
TTLS = ("5m", "1h")


def _places(body: JSON) -> Iterator[tuple[str, Any]]:
    """(where, value) of every ``cache_control`` in a canonical request, in prompt order."""
    for index, tool in enumerate(body.get("tools") or []):
        if isinstance(tool, dict) and MARK in tool:
            yield f"tools[{index}].cache_control", tool[MARK]
    for index, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        for part_index, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and MARK in part:
                yield f"messages[{index}].content[{part_index}].cache_control", part[MARK]
        if MARK in message:
            yield f"messages[{index}].cache_control", message[MARK]


def mark_problem(mark: Any) -> str | None:
    """What is wrong with one ``cache_control`` value, as Anthropic reads it."""
    if not isinstance(mark, dict) or mark.get("type") != "ephemeral":
        return 'must be {"type": "ephemeral"} (optionally with "ttl": "5m" or "1h")'
    if mark.get("ttl") is not None and mark["ttl"] not in TTLS:
        return 'has a ttl that is neither "5m" nor "1h"'
    if set(mark) - {"type", "ttl"}:
        return "takes only type and ttl"
    return None


def marks_problem(body: JSON) -> tuple[str, str] | None:
    """(message, param) refusing the request's marks, or None: a malformed mark, or more than
    Anthropic's ``MAX_BREAKPOINTS`` of them (Anthropic answers that with a 400 too)."""
    places = list(_places(body))
    for where, mark in places:
        problem = mark_problem(mark)
        if problem:
            return f"{where} {problem}.", where.partition("[")[0]
    if len(places) > MAX_BREAKPOINTS:
        return (
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(places)} ({', '.join(where for where, _ in places)}).",
            "cache_control",
        )
    return None


def has_marks(body: JSON) -> bool:
    return next(_places(body), None) is not None


def longest_ttl(body: JSON) -> str | None:
    """``"1h"`` when any mark asks for an hour, ``"5m"`` for other marks, None without marks."""
    ttls = {mark.get("ttl") or "5m" for _, mark in _places(body) if isinstance(mark, dict)}
    return "1h" if "1h" in ttls else ("5m" if ttls else None)


def marks_strip(body: JSON) -> JSON:
    """The request without its marks (for providers with no explicit caching); ``body`` is
    returned unchanged when it has none."""
    if not has_marks(body):
        return body

    def bare(item: Any) -> Any:
        return {k: v for k, v in item.items() if k != MARK} if isinstance(item, dict) else item

    messages = []
    for message in body.get("messages") or []:
        message = bare(message)
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            message["content"] = [bare(part) for part in message["content"]]
        messages.append(message)
    stripped = body | {"messages": messages}
    if body.get("tools"):
        stripped["tools"] = [bare(tool) for tool in body["tools"]]
    return stripped


def mark_of(item: Any) -> JSON | None:
    """An item's mark in Anthropic's wire form (``type``, and ``ttl`` only when given)."""
    mark = item.get(MARK) if isinstance(item, dict) else None
    if not isinstance(mark, dict):
        return None
    return {"type": "ephemeral"} | ({"ttl": mark["ttl"]} if mark.get("ttl") else {})
