"""Prompt-caching marks (``cache_control``) in the canonical (OpenAI) request.

Where they sit, as OpenRouter takes them: on a content part (``{"type": "text", ...,
"cache_control": {"type": "ephemeral"}}``), on a message (its last block is marked), on a
tool (``{"type": "function", "function": {...}, "cache_control": {...}}``), and on the request
itself (Anthropic's automatic caching: the last cacheable block is marked). The Anthropic ingress
puts an Anthropic block's mark in the same places. Only the Anthropic adapter sends them on (in
Anthropic's wire format); ``marks_strip`` takes them off for every other provider.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

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
    if MARK in body:
        yield "cache_control", body[MARK]


def _message_sent(index: int, message: JSON) -> Iterator[tuple[str, Any]]:
    """The marks of one message that reach Anthropic's blocks: a tool message's one block
    holds one; a message's own mark sits on its last block, replacing that block's own."""
    content = message.get("content")
    parts = [
        (f"messages[{index}].content[{at}].cache_control", part[MARK])
        for at, part in enumerate(content if isinstance(content, list) else [])
        if isinstance(part, dict) and MARK in part
    ]
    own = [(f"messages[{index}].cache_control", message[MARK])] if MARK in message else []
    if message.get("role") == "tool":
        yield from (own or parts)[-1:]
        return
    last = content[-1] if isinstance(content, list) and content else None
    if own and not message.get("tool_calls") and isinstance(last, dict) and MARK in last:
        parts = parts[:-1]  # the message's mark replaces its last block's
    yield from parts + own


def _sent(body: JSON) -> Iterator[tuple[str, Any]]:
    """(where, value) of the marks Anthropic receives, in its order: tools, system, messages."""
    for index, tool in enumerate(body.get("tools") or []):
        if isinstance(tool, dict) and MARK in tool:
            yield f"tools[{index}].cache_control", tool[MARK]
    messages = [
        (index, message)
        for index, message in enumerate(body.get("messages") or [])
        if isinstance(message, dict)
    ]
    # The adapter lifts system messages into Anthropic's ``system``, ahead of every turn.
    messages.sort(key=lambda item: item[1].get("role") not in ("system", "developer"))
    for index, message in messages:
        yield from _message_sent(index, message)
    if MARK in body:  # automatic caching: a breakpoint on the last cacheable block
        yield "cache_control", body[MARK]


def _ttl(mark: Any) -> str:
    return str((mark.get("ttl") if isinstance(mark, dict) else None) or "5m")


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
    """(message, param) refusing the request's marks, or None: a malformed mark, more than
    Anthropic's ``MAX_BREAKPOINTS`` of them as sent, or a 1h mark after a 5m one (Anthropic
    answers each with a 400 too)."""
    places = list(_places(body))
    for where, mark in places:
        problem = mark_problem(mark)
        if problem:
            return f"{where} {problem}.", where.partition("[")[0]
    sent = list(_sent(body))
    if len(sent) > MAX_BREAKPOINTS:
        return (
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(sent)} ({', '.join(where for where, _ in sent)}).",
            "cache_control",
        )
    five = None
    for where, mark in sent:
        if _ttl(mark) == "1h" and five:
            return (
                f'{where} has ttl "1h" after {five} with ttl "5m": Anthropic requires hour '
                "marks before five-minute ones, in the order tools, system, messages.",
                "cache_control",
            )
        five = five or (where if _ttl(mark) == "5m" else None)
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
    stripped = {k: v for k, v in body.items() if k != MARK} | {"messages": messages}
    if body.get("tools"):
        stripped["tools"] = [bare(tool) for tool in body["tools"]]
    return stripped


def mark_of(item: Any) -> JSON | None:
    """An item's mark in Anthropic's wire form (``type``, and ``ttl`` only when given)."""
    mark = item.get(MARK) if isinstance(item, dict) else None
    if not isinstance(mark, dict):
        return None
    return {"type": "ephemeral"} | ({"ttl": mark["ttl"]} if mark.get("ttl") else {})


def _units(body: JSON) -> Iterator[tuple[int, Any]]:
    """(size, mark or None) of the prompt's pieces in Anthropic's order (tools, system,
    messages): a mark ends the cached prefix after its piece. Sizes are serialized bytes."""
    for tool in body.get("tools") or []:
        yield len(orjson.dumps(tool)), tool.get(MARK) if isinstance(tool, dict) else None
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    messages.sort(key=lambda message: message.get("role") not in ("system", "developer"))
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else [content]:
            yield len(orjson.dumps(part)), part.get(MARK) if isinstance(part, dict) else None
        rest = {k: v for k, v in message.items() if k not in ("content", MARK)}
        yield len(orjson.dumps(rest)), message.get(MARK)
    if MARK in body:  # automatic caching: the whole prompt up to its last cacheable block
        yield 0, body[MARK]


def cached_prefix_shares(body: JSON) -> tuple[float, float]:
    """The shares of the prompt (by size) up to its last mark, and up to its last ``1h`` mark:
    what a provider that had the request writes to its cache, at most (a prefix below
    Anthropic's minimum, or one already cached, is written for less)."""
    total = done = last = last_hour = 0
    for size, mark in _units(body):
        done += size
        if isinstance(mark, dict):
            last = done
            last_hour = done if _ttl(mark) == "1h" else last_hour
        total += size
    return (last / total, last_hour / total) if total else (0.0, 0.0)
