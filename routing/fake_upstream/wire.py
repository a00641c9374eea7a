"""What every wire format of the fake shares (``Turn``: a request as the fake reads it), and
OpenAI's format: request reading, whole responses and stream events (Anthropic's is in
``anthropic_wire``, Gemini's in ``gemini``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from routing.fake_upstream import openai_shapes
from routing.fake_upstream.answers import Answer, Tool, count_tokens, decide, split_tokens
from routing.fake_upstream.images import media_tokens

JSON = dict[str, Any]


@dataclass
class Turn:
    """What the fake needs from any request: model, prompt text and answer constraints."""

    model: str
    prompt: str
    prompt_tokens: int
    tools: list[Tool] = field(default_factory=list)
    forced_tool: str | None = None  # the tool the request names to be called
    tool_required: bool = False  # a call of any tool required (OpenAI "required", Anthropic "any")
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
            tool_required=self.tool_required,
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
        tool_required=choice == "required",
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
