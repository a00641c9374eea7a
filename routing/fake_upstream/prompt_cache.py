"""Anthropic's prompt cache, as the fake keeps it: the prefix up to each ``cache_control``
mark (tools, then system, then messages: Anthropic's order) is remembered per model; a request
whose marked prefix was seen before reads it, the rest up to its last mark is written.

Simplified from Anthropic's: no minimum cacheable length, no expiry, and a hit on any earlier
mark (not only within 20 blocks). Bounded: the oldest prefixes are forgotten past ``LIMIT``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from routing.fake_upstream.answers import count_tokens

JSON = dict[str, Any]
LIMIT = 4096
MAX_BREAKPOINTS = 4


@dataclass
class CacheUse:
    read: int = 0
    write_5m: int = 0
    write_1h: int = 0


def _blocks(body: JSON) -> Iterator[JSON]:
    yield from body.get("tools") or []
    system = body.get("system")
    if isinstance(system, str):
        yield {"type": "text", "text": system}
    for block in system if isinstance(system, list) else []:
        yield block
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            yield {"type": "text", "text": content, "role": message.get("role")}
        for block in content if isinstance(content, list) else []:
            yield block | {"role": message.get("role")}


def _marked_paths(body: JSON) -> Iterator[tuple[str, Any]]:
    """(path, mark) of every marked block, in Anthropic's order, named as Anthropic names it."""
    for index, tool in enumerate(body.get("tools") or []):
        if isinstance(tool, dict) and "cache_control" in tool:
            yield f"tools.{index}", tool["cache_control"]
    system = body.get("system")
    for index, block in enumerate(system if isinstance(system, list) else []):
        if isinstance(block, dict) and "cache_control" in block:
            yield f"system.{index}", block["cache_control"]
    for turn, message in enumerate(body.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        for index, block in enumerate(content if isinstance(content, list) else []):
            if isinstance(block, dict) and "cache_control" in block:
                yield f"messages.{turn}.content.{index}", block["cache_control"]
    if "cache_control" in body:  # automatic caching: the last cacheable block's breakpoint
        yield "cache_control", body["cache_control"]


def _order_refusal(body: JSON) -> str | None:
    """Anthropic's 400 for an hour mark after a five-minute one (tools, system, messages)."""
    seen_5m = False
    for path, mark in _marked_paths(body):
        ttl = (mark.get("ttl") or "5m") if isinstance(mark, dict) else "5m"
        if ttl == "1h" and seen_5m:
            return (
                f"{path}.cache_control.ttl: a ttl='1h' cache_control block must not come after "
                "a ttl='5m' cache_control block. Note that blocks are processed in the "
                "following order: `tools`, `system`, `messages`."
            )
        seen_5m = seen_5m or ttl == "5m"
    return None


def _tokens(block: JSON) -> int:
    text = block.get("text") or block.get("content") or block.get("description") or ""
    return count_tokens(text if isinstance(text, str) else orjson.dumps(text).decode()) + 4


def marks_refusal(body: JSON) -> str | None:
    """Anthropic's 400 for too many breakpoints, or for an hour mark after a 5m one."""
    found = sum(1 for _ in _marked_paths(body))
    if found > MAX_BREAKPOINTS:
        return (
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found}."
        )
    return _order_refusal(body)


class PromptCache:
    def __init__(self) -> None:
        self.prefixes: OrderedDict[str, int] = OrderedDict()

    def use(self, body: JSON, model: str) -> CacheUse:
        """Read the longest remembered marked prefix, write the rest up to the last mark."""
        digest = hashlib.sha256(model.encode())
        tokens = 0
        marks: list[tuple[str, int, str]] = []  # (prefix key, tokens through it, ttl)
        for block in _blocks(body):
            bare = {k: v for k, v in block.items() if k != "cache_control"}
            digest.update(orjson.dumps(bare, option=orjson.OPT_SORT_KEYS))
            tokens += _tokens(block)
            mark = block.get("cache_control")
            if isinstance(mark, dict):
                marks.append((digest.hexdigest(), tokens, str(mark.get("ttl") or "5m")))
        use = CacheUse()
        hits = [through for key, through, _ in marks if key in self.prefixes]
        use.read = max(hits, default=0)
        done = use.read
        for key, through, ttl in marks:
            if through > done:
                if ttl == "1h":
                    use.write_1h += through - done
                else:
                    use.write_5m += through - done
                done = through
            self.prefixes[key] = through
            self.prefixes.move_to_end(key)
        while len(self.prefixes) > LIMIT:
            self.prefixes.popitem(last=False)
        return use
