"""The three wire formats the fake speaks: request reading, whole responses and stream events."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from routing.fake_upstream import openai_shapes
from routing.fake_upstream.answers import (
    Answer,
    Tool,
    count_tokens,
    cut_at_stop,
    decide,
    split_tokens,
)
from routing.fake_upstream.anthropic_refusals import lax_bool
from routing.fake_upstream.images import media_tokens

JSON = dict[str, Any]


@dataclass
class Turn:
    """What the fake needs from any request: model, prompt text and answer constraints."""

    model: str
    prompt: str
    prompt_tokens: int
    tools: list[Tool] = field(default_factory=list)
    forced_tool: str | None = None
    last_is_tool_result: bool = False
    tool_result: str = ""
    json_schema: JSON | None = None
    json_mode: bool = False
    prompt_texts: list[str] = field(default_factory=list)
    media_tokens: int = 0  # the prompt's images (by the model's formula) and other media
    thinking: bool = False  # Anthropic extended thinking asked for: answer with a signed block
    candidate_count: object = None  # Gemini's generationConfig.candidateCount, as sent
    # Counts to report whatever was counted ("prompt", "completion"): a broken provider.
    reported: JSON = field(default_factory=dict)
    cache_writes: tuple[int, int] = (0, 0)  # Anthropic prompt-cache writes: (5m, 1h) tokens
    stop_sequences: list[str] = field(default_factory=list)  # Anthropic's, honoured

    def answer(self) -> Answer:
        return decide(
            model=self.model,
            prompt=self.prompt,
            tools=self.tools,
            forced_tool=self.forced_tool,
            last_is_tool_result=self.last_is_tool_result,
            tool_result=self.tool_result,
            json_schema=self.json_schema,
            json_mode=self.json_mode,
        )


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, dict):
                out.append(str(part.get("text") or ""))
                if isinstance(part.get("content"), str | list):
                    out.append(_text(part["content"]))
        return " ".join(o for o in out if o)
    return ""


def _prompt_tokens(texts: list[str], media: int) -> int:
    return sum(count_tokens(t) + 4 for t in texts) + media + 3


def byte_prompt_tokens(turn: Turn) -> int:
    """The prompt counted as a byte-level BPE tokenizer's worst case, a token per UTF-8 byte
    (real tokenizers give CJK text and emoji one or more tokens per character)."""
    return sum(len(t.encode()) + 4 for t in turn.prompt_texts) + turn.media_tokens + 3


def _reported(turn: Turn, usage: JSON, *, prompt: str, completion: str) -> JSON:
    """``usage`` with the counts a test told the fake to report instead of its own."""
    names = {"prompt": prompt, "completion": completion}
    return usage | {names[kind]: value for kind, value in turn.reported.items()}


# --- OpenAI ------------------------------------------------------------------------------------


def openai_turn(body: JSON, model: str) -> Turn:
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    users = [m for m in messages if m.get("role") == "user"]
    tools = [  # OpenAI's custom tools (free-form input) are accepted; the fake calls none of them
        Tool(t["function"]["name"], t["function"].get("parameters") or {})
        for t in body.get("tools") or []
        if t.get("type", "function") == "function"
    ]
    choice = body.get("tool_choice")
    forced = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if choice == "required" and tools:
        forced = tools[0].name
    fmt = body.get("response_format") or {}
    schema = (
        (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
    )
    texts = [_text(m.get("content")) for m in messages]
    media = sum(media_tokens(m.get("content"), model) for m in messages)
    return Turn(
        model=model,
        prompt=_text(users[-1].get("content")) if users else "",
        prompt_tokens=_prompt_tokens(texts, media),
        prompt_texts=texts,
        media_tokens=media,
        tools=tools if choice != "none" else [],
        forced_tool=forced,
        last_is_tool_result=last.get("role") == "tool",
        tool_result=_text(last.get("content")) if last.get("role") == "tool" else "",
        json_schema=schema,
        json_mode=fmt.get("type") == "json_object",
    )


def deepseek_thought(turn: Turn) -> str:
    """The reasoning a ``*reasoner*`` model streams as ``reasoning_content`` before its answer,
    as DeepSeek's does (no other model has any): long enough to be worth reading alone."""
    return (
        " ".join(["Step: weigh the question once more."] * 20) if "reasoner" in turn.model else ""
    )


def openai_usage(turn: Turn, completion: int, cached: int) -> JSON:
    reasoning = 5 if turn.model.startswith(("o1", "o3", "o4")) or "reason" in turn.model else 0
    reasoning = count_tokens(deepseek_thought(turn)) or reasoning
    usage = {
        "prompt_tokens": turn.prompt_tokens,
        "completion_tokens": completion + reasoning,
        "total_tokens": turn.prompt_tokens + completion + reasoning,
        "prompt_tokens_details": {"cached_tokens": min(cached, turn.prompt_tokens)},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    return _reported(turn, usage, prompt="prompt_tokens", completion="completion_tokens")


def _openai_call(answer: Answer) -> JSON:
    return {
        "id": f"call_{abs(hash(answer.tool_name)) % 10**8:08d}",
        "type": "function",
        "function": {
            "name": answer.tool_name,
            "arguments": orjson.dumps(answer.tool_arguments).decode(),
        },
    }


def openai_response(turn: Turn, answer: Answer, cached: int, max_tokens: int | None) -> JSON:
    text, finish = _truncate(answer.text, max_tokens)
    message: JSON = {"role": "assistant", "content": text if not answer.is_tool_call else None}
    if deepseek_thought(turn):
        message["reasoning_content"] = deepseek_thought(turn)
    if answer.is_tool_call:
        message["tool_calls"] = [_openai_call(answer)]
        finish = "tool_calls"
    completion = count_tokens(text) if not answer.is_tool_call else 12
    if openai_shapes.is_magistral(turn.model) and not answer.is_tool_call:
        message["content"] = openai_shapes.magistral_parts(text)
        completion += count_tokens(openai_shapes.thought_of(text))
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": turn.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": openai_usage(turn, completion, cached),
    }


def openai_stream(
    turn: Turn, answer: Answer, cached: int, max_tokens: int | None, include_usage: bool
) -> Iterator[bytes]:
    base = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": turn.model,
    }

    def chunk(delta: JSON, finish: str | None = None) -> bytes:
        data = base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(data) + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    thought = deepseek_thought(turn)
    for piece in split_tokens(thought) if thought else []:  # DeepSeek's reasoner thinks first
        yield chunk({"reasoning_content": piece})
    if answer.is_tool_call:
        call = _openai_call(answer)
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": answer.tool_name, "arguments": ""},
                    }
                ]
            }
        )
        arguments = call["function"]["arguments"]
        for start in range(0, len(arguments), 8):
            yield chunk(
                {
                    "tool_calls": [
                        {"index": 0, "function": {"arguments": arguments[start : start + 8]}}
                    ]
                }
            )
        finish, completion = "tool_calls", 12
    else:
        text, finish = _truncate(answer.text, max_tokens)
        completion = count_tokens(text)
        magistral = openai_shapes.is_magistral(turn.model)
        if magistral:  # Mistral's thinking chunk first, then text chunks, all as lists
            yield chunk({"content": [openai_shapes.thinking_part(text)]})
            completion += count_tokens(openai_shapes.thought_of(text))
        for piece in split_tokens(text):
            yield chunk({"content": [{"type": "text", "text": piece}] if magistral else piece})
    yield chunk({}, finish)
    if include_usage:
        yield (
            b"data: "
            + orjson.dumps(base | {"choices": [], "usage": openai_usage(turn, completion, cached)})
            + b"\n\n"
        )
    yield b"data: [DONE]\n\n"


def _truncate(text: str, max_tokens: int | None) -> tuple[str, str]:
    if max_tokens is None or count_tokens(text) <= max_tokens:
        return text, "stop"
    pieces = split_tokens(text)
    kept: list[str] = []
    for piece in pieces:
        if count_tokens("".join([*kept, piece])) > max_tokens:
            break
        kept.append(piece)
    return "".join(kept), "length"


# --- Anthropic ---------------------------------------------------------------------------------


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
    forced = (
        choice.get("name")
        if choice.get("type") == "tool"
        else (tools[0].name if choice.get("type") == "any" and tools else None)
    )
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
