"""Anthropic's wire format in the fake: request reading, whole responses and stream events."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import orjson

from routing.fake_upstream.answers import Answer, Tool, count_tokens, cut_at_stop, split_tokens
from routing.fake_upstream.anthropic_refusals import lax_bool
from routing.fake_upstream.images import media_tokens
from routing.fake_upstream.wire import JSON, Turn, _prompt_tokens, _reported, _text, _truncate


def anthropic_turn(body: JSON, model: str) -> Turn:
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    last_blocks: list[Any] = last["content"] if isinstance(last.get("content"), list) else []
    results = [b for b in last_blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
    users = [m for m in messages if m.get("role") == "user"]
    user_text = ""
    for message in reversed(users):
        content = message.get("content")
        blocks = (
            [b for b in content if b.get("type") == "text"]
            if isinstance(content, list)
            else content
        )
        user_text = _text(blocks)
        if user_text:
            break
    tools = [Tool(t["name"], t.get("input_schema") or {}) for t in body.get("tools") or []]
    choice = body.get("tool_choice") or {}
    forced = choice.get("name") if choice.get("type") == "tool" else None
    texts = [_text(body.get("system"))] + [_text(m.get("content")) for m in messages]
    media = sum(media_tokens(m.get("content"), model) for m in messages)
    return Turn(
        model=model,
        prompt=user_text,
        prompt_tokens=_prompt_tokens(texts, media),
        prompt_texts=texts,
        media_tokens=media,
        tools=tools if choice.get("type") != "none" else [],
        forced_tool=forced,
        tool_required=choice.get("type") == "any",
        last_is_tool_result=bool(results),
        tool_result=_tool_result_text(results[-1]) if results else "",
        json_schema=((body.get("output_config") or {}).get("format") or {}).get("schema"),
        thinking=(body.get("thinking") or {}).get("type") in ("enabled", "adaptive"),
        stop_sequences=[s for s in body.get("stop_sequences") or [] if isinstance(s, str) and s],
    )


def _tool_result_text(block: JSON) -> str:
    """A tool result as the fake model reads it: a failed tool's (``is_error``, read leniently as
    Anthropic's validation does) says so first."""
    failed = lax_bool(block.get("is_error")) is True
    return ("Error: " if failed else "") + _text(block.get("content"))


def thinking_of(turn: Turn) -> JSON:
    """The signed thinking block the fake puts first when thinking was asked for."""
    thought = f"The user asks: {turn.prompt[:80]}. I will answer plainly."
    if "redacted" in turn.model:  # thinking Anthropic's safety systems encrypted, 40 times longer
        data = base64.b64encode(thought.encode() * 40).decode()
        return {"type": "redacted_thinking", "data": data}
    signature = base64.b64encode(hashlib.sha256(thought.encode()).digest()).decode()
    return {"type": "thinking", "thinking": thought, "signature": signature}


def anthropic_usage(turn: Turn, completion: int, cached: int) -> JSON:
    cached = min(cached, turn.prompt_tokens)
    five = min(turn.cache_writes[0], turn.prompt_tokens - cached)
    hour = min(turn.cache_writes[1], turn.prompt_tokens - cached - five)
    usage = {
        "input_tokens": turn.prompt_tokens - cached - five - hour,
        "output_tokens": completion,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": five + hour,
        "cache_creation": {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": hour},
    }
    return _reported(turn, usage, prompt="input_tokens", completion="output_tokens")


def anthropic_response(turn: Turn, answer: Answer, cached: int, max_tokens: int | None) -> JSON:
    if answer.is_tool_call:
        content = [
            {
                "type": "tool_use",
                "id": "toolu_fake01",
                "name": answer.tool_name,
                "input": answer.tool_arguments,
            }
        ]
        stop, completion = "tool_use", 12
    else:
        text, finish = _truncate(answer.text, max_tokens)
        text, matched = cut_at_stop(text, turn.stop_sequences)
        content = [{"type": "text", "text": text}]
        stop, completion = ("max_tokens" if finish == "length" else "end_turn"), count_tokens(text)
        stop = "stop_sequence" if matched else stop
    if turn.thinking:
        thinking = thinking_of(turn)
        content.insert(0, thinking)
        completion += count_tokens(thinking.get("thinking") or thinking["data"])
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": turn.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": matched if stop == "stop_sequence" else None,
        "usage": anthropic_usage(turn, completion, cached),
    }


_DELTA_USAGE = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


def _event(name: str, data: JSON) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def anthropic_stream(
    turn: Turn, answer: Answer, cached: int, max_tokens: int | None
) -> Iterator[bytes]:
    whole = anthropic_response(turn, answer, cached, max_tokens)
    start = whole | {"content": [], "stop_reason": None, "usage": anthropic_usage(turn, 1, cached)}
    yield _event("message_start", {"type": "message_start", "message": start})
    yield _event("ping", {"type": "ping"})
    index = 0
    if whole["content"][0]["type"] in ("thinking", "redacted_thinking"):
        yield from _thinking_events(whole["content"][0])
        index = 1
    block = whole["content"][index]
    if block["type"] == "tool_use":
        yield _event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block | {"input": {}}},
        )
        arguments = orjson.dumps(block["input"]).decode()
        for start_at in range(0, len(arguments), 8):
            delta = {"type": "input_json_delta", "partial_json": arguments[start_at : start_at + 8]}
            yield _event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
    else:
        yield _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
        )
        for piece in split_tokens(block["text"]):
            delta = {"type": "text_delta", "text": piece}
            yield _event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
    yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": whole["stop_reason"], "stop_sequence": whole["stop_sequence"]},
            # Anthropic repeats the running input/cache totals here, without the breakdown.
            "usage": {key: whole["usage"][key] for key in _DELTA_USAGE if key in whole["usage"]},
        },
    )
    yield _event("message_stop", {"type": "message_stop"})


def _thinking_events(block: JSON) -> Iterator[bytes]:
    start = block if "data" in block else {"type": "thinking", "thinking": "", "signature": ""}
    yield _event(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": start}
    )
    if "data" in block:  # redacted thinking comes whole in its start
        yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        return
    for piece in split_tokens(block["thinking"]):
        delta = {"type": "thinking_delta", "thinking": piece}
        yield _event(
            "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        )
    delta = {"type": "signature_delta", "signature": block["signature"]}
    yield _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
    yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
