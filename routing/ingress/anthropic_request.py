"""Anthropic Messages requests → canonical (OpenAI) requests, once ``anthropic_checks`` has
refused what the translation cannot read."""

from __future__ import annotations

from typing import Any

import orjson

from routing.ingress.anthropic_checks import messages_request_check
from routing.providers.anthropic_messages import reasoning_detail
from routing.providers.base import JSON, IngressMarks


def _image_url(source: JSON) -> str:
    if source.get("type") == "base64":
        return f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    return str(source.get("url", ""))


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
    )


def _marked(item: JSON, block: JSON) -> JSON:
    """``item`` with ``block``'s prompt-caching mark, if it has one (checked on the canonical
    request, ``routing.providers.cache_marks``)."""
    return item | {"cache_control": block["cache_control"]} if "cache_control" in block else item


def _system(system: Any) -> JSON:
    """The system prompt as a canonical message: text, or text parts when a block is marked."""
    if isinstance(system, list) and any("cache_control" in block for block in system):
        parts = [
            _marked({"type": "text", "text": str(block.get("text", ""))}, block)
            for block in system
            if block.get("type") == "text"
        ]
        return {"role": "system", "content": parts}
    return {"role": "system", "content": _block_text(system)}


def _object(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _document_part(block: JSON) -> JSON:
    """A document block → an OpenAI ``file`` part (a PDF, inline) or text (a text source, or
    a content source's text blocks), which every adapter sends on."""
    source = _object(block.get("source"))
    if source.get("type") == "base64":
        media_type = source.get("media_type", "application/pdf")
        file = {"file_data": f"data:{media_type};base64,{source.get('data', '')}"}
        return {
            "type": "file",
            "file": file | {"filename": str(block.get("title") or "document.pdf")},
        }
    text = source.get("data") if source.get("type") == "text" else source.get("content")
    title = f"{block['title']}\n\n" if block.get("title") else ""
    return {"type": "text", "text": title + _block_text(text)}


def _media_part(block: JSON) -> JSON | None:
    """An image or document block → its OpenAI content part; None for other blocks."""
    if block.get("type") == "image":
        return {"type": "image_url", "image_url": {"url": _image_url(_object(block.get("source")))}}
    if block.get("type") == "document":
        return _document_part(block)
    return None


def _tool_result_message(block: JSON, media: list[JSON]) -> JSON:
    """A ``tool_result`` → a tool message: its text, or its text, image and file parts when the
    tool returned media (a screenshot), which stay there on the canonical side: Anthropic gets
    them back inline in its ``tool_result``, OpenAI and Gemini in a user message after the tool
    messages (``routing.providers.tool_media``). Adds the media parts to ``media``."""
    message: JSON = {"role": "tool", "tool_call_id": block["tool_use_id"]}
    inner = block.get("content")
    parts: list[JSON] = []
    documents: list[bool] = []  # whether each part came from a document block
    for nested in map(_object, inner if isinstance(inner, list) else []):
        part = _media_part(nested)
        if part is None and nested.get("type") == "text":
            part = {"type": "text", "text": str(nested.get("text", ""))}
        if part is not None:
            parts.append(part)
            documents.append(nested.get("type") == "document")
        if part is not None and part["type"] != "text":  # a text document stays text
            media.append(part)
    if any(part["type"] != "text" for part in parts):
        message["content"] = parts
    elif any(documents):  # a text document's text, apart from the tool's own text (Gemini
        # parses a tool's JSON output, which must not be glued to it)
        message["content"] = "".join(
            ("\n\n" if index and (documents[index] or documents[index - 1]) else "") + part["text"]
            for index, part in enumerate(parts)
        )
    else:
        message["content"] = _block_text(inner)
    return _marked(message, block)


def _user_turn(content: Any, failed: set[str], media: list[JSON]) -> list[JSON]:
    """One Anthropic user turn → tool messages (results first, as OpenAI requires) then a user
    message. Adds the failed results' ids to ``failed`` and a tool result's media parts to
    ``media`` (``IngressMarks``)."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tool_messages: list[JSON] = []
    parts: list[JSON] = []
    for block in content or []:
        kind = block.get("type")
        if kind == "tool_result":
            if block.get("is_error") is True:  # a non-empty string id (``_block_check``)
                failed.add(block["tool_use_id"])  # each adapter says it its own way
            tool_messages.append(_tool_result_message(block, media))
        elif kind == "text":
            parts.append(_marked({"type": "text", "text": block.get("text", "")}, block))
        elif (part := _media_part(block)) is not None:
            parts.append(_marked(part, block))
    if parts:
        tool_messages.append({"role": "user", "content": parts})
    return tool_messages


def _assistant_turn(content: Any) -> JSON:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    text: list[JSON] = []
    calls: list[JSON] = []
    thinking: list[JSON] = []
    mark: JSON = {}  # a tool call's mark: its message's (the call is the turn's last block)
    for block in content or []:
        if block.get("type") == "text":
            text.append(_marked({"type": "text", "text": block.get("text", "")}, block))
        elif block.get("type") in ("thinking", "redacted_thinking"):
            thinking.append(block)  # Anthropic wants these back in the turn they came from
        elif block.get("type") == "tool_use":
            mark = _marked({}, block) or mark  # a later unmarked call keeps an earlier mark
            calls.append(
                {
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {
                        "name": block.get("name", ""),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    marked = any("cache_control" in part for part in text)
    joined = "".join(part["text"] for part in text) if text else None
    message: JSON = {"role": "assistant", "content": text if marked else joined} | mark
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_details"] = [reasoning_detail(block) for block in thinking]
    return message


def _tool_choice(choice: Any) -> Any:
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "any":
        return "required"
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name", "")}}
    return kind if kind in ("auto", "none") else None


def _tools(body: JSON) -> list[JSON]:
    return [
        _marked(
            {
                "type": "function",
                "function": {
                    "name": t.get("name", ""),
                    "description": t.get("description", ""),
                    "parameters": t.get("input_schema") or {"type": "object"},
                },
            },
            t,
        )
        for t in body.get("tools") or []
        if t.get("name") and t.get("type") in (None, "custom")
    ]


def messages_request_to_canonical(body: JSON, *, counting: bool = False) -> JSON:
    """``messages_request_parsed`` without the marks."""
    return messages_request_parsed(body, counting=counting)[0]


def messages_request_parsed(body: JSON, *, counting: bool = False) -> tuple[JSON, IngressMarks]:
    """An Anthropic Messages request → the canonical (OpenAI Chat Completions) request and what
    its messages cannot say themselves (a failed tool result, a tool's screenshot).

    ``thinking`` and ``output_config`` stay as they are (only the Anthropic adapter forwards
    them, natively); ``output_config.format`` also becomes ``response_format``, which the
    other adapters serve. ``counting``: a count_tokens request, which has no ``max_tokens``."""
    messages_request_check(body, counting=counting)
    messages: list[JSON] = []
    failed: set[str] = set()
    media: list[JSON] = []
    system = body.get("system")
    if system:
        messages.append(_system(system))
    for turn in body["messages"]:
        if turn.get("role") == "assistant":
            messages.append(_assistant_turn(turn.get("content")))
        else:
            messages.extend(_user_turn(turn.get("content"), failed, media))
    canonical: JSON = {
        "model": body.get("model"),
        "messages": messages,
    }
    if not counting:
        canonical["max_tokens"] = body["max_tokens"]
    if body.get("thinking") is not None:
        canonical["thinking"] = body["thinking"]
    config = body.get("output_config") or {}
    if config.get("format"):
        schema = config["format"]["schema"]
        canonical["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": True},
        }
    if config:
        canonical["output_config"] = config
    for name in ("temperature", "top_p", "top_k", "stream", "models", "provider", "router"):
        if body.get(name) is not None:
            canonical[name] = body[name]
    if body.get("stop_sequences"):
        canonical["stop"] = body["stop_sequences"]
    if (body.get("metadata") or {}).get("user_id"):
        canonical["user"] = body["metadata"]["user_id"]
    tools = _tools(body)
    if tools:
        canonical["tools"] = tools
    choice = _tool_choice(body.get("tool_choice"))
    if choice is not None:
        canonical["tool_choice"] = choice
    if (body.get("tool_choice") or {}).get("disable_parallel_tool_use"):
        canonical["parallel_tool_calls"] = False
    marks = IngressMarks(frozenset(failed), tuple(media), parts_counted=True)
    return _marked(canonical, body), marks  # a top-level mark: Anthropic's automatic caching
