"""The Messages API's own checks on an Anthropic request (content shapes, thinking budgets,
content-part caps), answered as 400s naming the field before anything is translated."""

from __future__ import annotations

from typing import Any

from routerhub.errors import BadRequest
from routing.providers.base import JSON, parts_cap_problem
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
    source = block["source"] if isinstance(block.get("source"), dict) else {}
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


def messages_request_check(body: JSON, *, counting: bool = False) -> None:
    """Refuse, naming the field, what the translation (``anthropic_request``) cannot read.
    ``counting``: a count_tokens request, which has no ``max_tokens``."""
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
    contents = [("system", body.get("system"))] + [
        (f"messages[{index}].content", turn.get("content")) for index, turn in enumerate(turns)
    ]
    # The one count of this request's parts: its canonical messages hold no more, a message or
    # in all, so the shared check does not count them again (``IngressMarks.parts_counted``).
    problem = parts_cap_problem([(where, _parts(content)) for where, content in contents])
    if problem:
        raise BadRequest(problem, param="messages")
    for where, content in contents:
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


def _parts(content: Any) -> int:
    """The content blocks of a turn (or the system prompt), a tool_result's own included (they
    join its user message)."""
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
