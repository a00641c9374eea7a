"""Anthropic Messages requests → canonical (OpenAI) requests, with the Messages API's own checks
(thinking budgets, content shapes) answered as Anthropic-shaped 400s."""

from __future__ import annotations

from typing import Any

import orjson

from routerhub.errors import BadRequest
from routing.providers.anthropic_messages import reasoning_detail
from routing.providers.base import JSON, IngressMarks, parts_cap_problem
from routing.providers.media import is_base64

THINKING_TYPES = ("enabled", "adaptive", "disabled")
MIN_THINKING_BUDGET = 1024  # Anthropic's floor for thinking.budget_tokens
# The content blocks translated (the rest, server tools' blocks, search results, containers,
# are refused rather than dropped), and the sources read for images and documents.
_BLOCK_TYPES = frozenset(
    {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}
)
_SOURCES = {"image": ("base64", "url"), "document": ("base64", "text", "content")}
# Anthropic-defined tools the client runs (versioned types: bash_20250124, computer_20250124, …).
_CLIENT_TOOL_PREFIXES = ("bash_", "text_editor_", "computer_", "memory_")
_NESTED_TYPES = frozenset({"text", "image", "document"})  # what a tool_result's content holds


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


def _is_content(content: Any) -> bool:
    return isinstance(content, str) or (
        isinstance(content, list) and all(isinstance(block, dict) for block in content)
    )


def _thinking_check(body: JSON) -> None:
    thinking = body.get("thinking")
    if thinking is not None and not (
        isinstance(thinking, dict) and thinking.get("type") in THINKING_TYPES
    ):
        raise BadRequest(
            'thinking must be an object whose type is "enabled", "adaptive" or "disabled".',
            param="thinking",
        )
    budget = (thinking or {}).get("budget_tokens")
    if (thinking or {}).get("type") == "enabled" and (
        not isinstance(budget, int) or isinstance(budget, bool) or budget < MIN_THINKING_BUDGET
    ):
        raise BadRequest(
            f"thinking.budget_tokens is required with type enabled (an integer of at least "
            f"{MIN_THINKING_BUDGET}).",
            param="thinking",
        )
    max_tokens = body.get("max_tokens")
    if isinstance(budget, int) and isinstance(max_tokens, int) and budget >= max_tokens:
        raise BadRequest(
            f"thinking.budget_tokens ({budget}) must be less than max_tokens ({max_tokens}).",
            param="thinking",
        )
    config = body.get("output_config")
    if config is not None and not isinstance(config, dict):
        raise BadRequest("output_config must be an object.", param="output_config")
    fmt = (config or {}).get("format")
    if fmt is not None and not (
        isinstance(fmt, dict)
        and fmt.get("type") == "json_schema"
        and isinstance(fmt.get("schema"), dict)
    ):
        raise BadRequest(
            'output_config.format must be {"type": "json_schema", "schema": {...}}.',
            param="output_config",
        )


def _block_check(at: str, block: JSON, param: str) -> None:
    """Refuse a block the translation would otherwise drop in silence, saying what to send."""
    kind = block["type"]
    if kind not in _BLOCK_TYPES:
        raise BadRequest(
            f"{at} is a {kind} block, which RouterHub does not translate; supported blocks: "
            f"{', '.join(sorted(_BLOCK_TYPES))}.",
            param=param,
        )
    source = _object(block.get("source"))
    sources = _SOURCES.get(kind)
    if sources is not None and source.get("type") not in sources:
        raise BadRequest(
            f"{at} is a {kind} block with a {source.get('type')!r} source; send it as "
            f"{' or '.join(sources)} (files uploaded to a provider and URLs to documents are "
            "not fetched here).",
            param=param,
        )
    problem = _source_problem(source) if sources is not None else None
    if problem:
        raise BadRequest(f"{at}.source {problem}.", param=param)
    if kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str) or not block["tool_use_id"]:
            raise BadRequest(  # Anthropic requires it; failure is marked per id
                f"{at} is a tool_result block: give tool_use_id (a non-empty string: its "
                "tool_use's id).",
                param=param,
            )
        failed = block.get("is_error")
        if failed is not None and not isinstance(failed, bool):  # "false" is not false
            raise BadRequest(f"{at}.is_error must be a boolean (true or false).", param=param)
        _nested_check(at, block.get("content"), param)


def _source_problem(source: JSON) -> str | None:
    """What is wrong with an image's or document's source (its type already checked)."""
    kind = source["type"]
    if kind == "base64":
        if not isinstance(source.get("media_type"), str) or "/" not in source["media_type"]:
            return "needs media_type (a string such as image/png or application/pdf)"
        if not is_base64(source.get("data")):
            return "needs data as valid base64"
    elif kind == "url" and not isinstance(source.get("url"), str):
        return "needs url (a string)"
    elif kind == "text" and not isinstance(source.get("data"), str):
        return "needs data (a string)"
    return None


def _nested_check(at: str, content: Any, param: str) -> None:
    """A tool result's own blocks get the same checks; only text, images and documents nest."""
    if content is None or isinstance(content, str):
        return
    if not _is_content(content):
        raise BadRequest(f"{at}.content must be a string or a list of blocks.", param=param)
    for index, nested in enumerate(content):
        kind = nested.get("type")
        if kind not in _NESTED_TYPES:
            raise BadRequest(
                f"{at}.content[{index}] is a {kind} block, which RouterHub does not translate "
                f"inside a tool_result; supported there: {', '.join(sorted(_NESTED_TYPES))}.",
                param=param,
            )
        if kind == "text" and not isinstance(nested.get("text"), str):
            raise BadRequest(f"{at}.content[{index}] is a text block: give text.", param=param)
        _block_check(f"{at}.content[{index}]", nested, param)


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


def _shape_check(body: JSON, *, counting: bool = False) -> None:
    """Refuse, naming the field, what the translation below cannot read."""
    turns = body.get("messages")
    if not isinstance(turns, list) or not all(isinstance(turn, dict) for turn in turns):
        raise BadRequest("messages must be a list of turns (objects).", param="messages")
    max_tokens = body.get("max_tokens")
    if not counting and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)):
        raise BadRequest("max_tokens is required (an integer).", param="max_tokens")
    _thinking_check(body)
    for index, turn in enumerate(turns):
        if not _is_content(turn.get("content")):
            raise BadRequest(
                f"messages[{index}].content must be a string or a list of content blocks.",
                param="messages",
            )
    if body.get("system") is not None and not _is_content(body["system"]):
        raise BadRequest("system must be a string or a list of text blocks.", param="system")
    problem = parts_cap_problem(
        [(f"messages[{i}].content", _blocks(t)) for i, t in enumerate(turns)]
    )
    if problem:
        raise BadRequest(problem, param="messages")
    for where, content in [("system", body.get("system"))] + [
        (f"messages[{index}].content", turn.get("content")) for index, turn in enumerate(turns)
    ]:
        for block_index, block in enumerate(content if isinstance(content, list) else []):
            if not isinstance(block.get("type"), str):
                raise BadRequest(f"{where}[{block_index}] needs a type (a string).", param=where)
            if block["type"] == "text" and not isinstance(block.get("text"), str):
                raise BadRequest(
                    f"{where}[{block_index}] is a text block: give text (a string).", param=where
                )
            _block_check(f"{where}[{block_index}]", block, where)
    for name in ("metadata", "tool_choice"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise BadRequest(f"{name} must be an object.", param=name)
    tools = body.get("tools")
    if tools is not None and not _is_content(tools):
        raise BadRequest("tools must be a list of objects.", param="tools")
    for index, tool in enumerate(tools or []):
        if not isinstance(tool.get("name"), str):
            raise BadRequest(f"tools[{index}] needs a name (a string).", param="tools")
        if tool.get("type") not in (None, "custom"):
            raise BadRequest(f"tools[{index}] {_tool_type_problem(tool['type'])}", param="tools")
        if tool.get("input_schema") is not None and not isinstance(tool["input_schema"], dict):
            raise BadRequest(
                f"tools[{index}].input_schema must be a JSON Schema object.", param="tools"
            )
    stops = body.get("stop_sequences")
    if stops is not None and not (
        isinstance(stops, list) and all(isinstance(stop, str) for stop in stops)
    ):
        raise BadRequest("stop_sequences must be a list of strings.", param="stop_sequences")


def _blocks(turn: JSON) -> int:
    """A turn's content blocks, a tool_result's own included (they join its user message)."""
    content = turn.get("content")
    if not isinstance(content, list):
        return 0
    nested = (block.get("content") for block in content if block.get("type") == "tool_result")
    return len(content) + sum(len(inner) for inner in nested if isinstance(inner, list))


def _tool_type_problem(kind: Any) -> str:
    if isinstance(kind, str) and kind.startswith(_CLIENT_TOOL_PREFIXES):
        return (
            f"is the Anthropic-defined tool type {kind!r}: your client runs it, but RouterHub "
            "cannot translate its built-in schema to other providers. Declare it as a custom "
            "tool (name, description, input_schema) and run it as before."
        )
    return (
        f"is Anthropic's server tool {kind!r}, which RouterHub does not run; give client tools "
        "(name, description, input_schema) only."
    )


def _media_part(block: JSON) -> JSON | None:
    """An image or document block → its OpenAI content part; None for other blocks."""
    if block.get("type") == "image":
        return {"type": "image_url", "image_url": {"url": _image_url(_object(block.get("source")))}}
    if block.get("type") == "document":
        return _document_part(block)
    return None


def _user_turn(content: Any, failed: set[str], media: list[JSON]) -> list[JSON]:
    """One Anthropic user turn → tool messages (results first, as OpenAI requires) then a user
    message. A tool result's images and documents (a screenshot) join that user message: an
    OpenAI tool message holds text only. Adds the failed results' ids to ``failed`` and those
    media parts to ``media`` (``IngressMarks``)."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tool_messages: list[JSON] = []
    parts: list[JSON] = []
    for block in content or []:
        kind = block.get("type")
        if kind == "tool_result":
            text = _block_text(block.get("content"))
            message: JSON = {"role": "tool", "tool_call_id": block["tool_use_id"]}
            message["content"] = text
            if block.get("is_error") is True:  # a non-empty string id (``_block_check``)
                failed.add(block["tool_use_id"])  # each adapter says it its own way
            tool_messages.append(_marked(message, block))
            inner = block.get("content")
            for nested in inner if isinstance(inner, list) else []:
                part = _media_part(_object(nested))
                if part is not None:
                    parts.append(part)
                if part is not None and part["type"] != "text":  # a text document stays text
                    media.append(part)
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
    _shape_check(body, counting=counting)
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
    marks = IngressMarks(frozenset(failed), tuple(media))
    return _marked(canonical, body), marks  # a top-level mark: Anthropic's automatic caching
