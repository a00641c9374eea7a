"""OpenAI's ``tool_choice: {"type": "allowed_tools", ...}`` as every provider takes it."""

from __future__ import annotations

from routerhub.errors import BadRequest
from routing.gateway.request_shape import tools_validate
from routing.providers.base import CLIENT_TOOL_TYPES, JSON

_SHAPE = (
    'tool_choice.allowed_tools must be {"mode": "auto" or "required", "tools": [{"type": '
    '"function", "function": {"name": ...}}, ...]}, each named tool one of tools.'
)
_NAMEABLE = (
    "tool_choice.allowed_tools.tools[{index}] is a '{kind}' tool: only function and custom "
    'tools can be named, each as {{"type": "function", "function": {{"name": <a string>}}}} '
    "(or custom's)."
)


def _tool_key(tool: object) -> tuple[str, str] | None:
    """A chat tool's (or tool reference's) type and name (``function.name``, ``custom.name``),
    or None when either is not a string (a built-in tool has no name)."""
    if not isinstance(tool, dict):
        return None
    kind = tool.get("type", "function")
    inner = tool.get(kind) if isinstance(kind, str) else None
    name = inner.get("name") if isinstance(inner, dict) else None
    return (kind, name) if isinstance(kind, str) and isinstance(name, str) else None


def _allowed_keys(listed: list[object]) -> set[tuple[str, str]]:
    """The (type, name) of each tool the choice names, or a 400 naming ``tool_choice``."""
    keys = set()
    for index, item in enumerate(listed):
        kind = item.get("type", "function") if isinstance(item, dict) else None
        if isinstance(kind, str) and kind not in CLIENT_TOOL_TYPES:
            raise BadRequest(_NAMEABLE.format(index=index, kind=kind), param="tool_choice")
        key = _tool_key(item)
        if key is None:
            raise BadRequest(_SHAPE, param="tool_choice")
        keys.add(key)
    return keys


def allowed_tools_applied(body: JSON) -> JSON:
    """The chat body with an ``allowed_tools`` choice as ``tools`` narrowed to the allowed ones
    and ``tool_choice`` its mode: what the model may call is the same, and Anthropic and Gemini
    have no such choice. (OpenAI keeps the whole list only to keep its prompt cache.) The tools
    are validated first (a bad tool left out by the choice is still a 400); a choice naming a
    tool not in ``tools`` is a 400, as OpenAI answers it."""
    choice = body.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") != "allowed_tools":
        return body
    tools_validate(body.get("tools"))
    allowed = choice.get("allowed_tools")
    mode = allowed.get("mode") if isinstance(allowed, dict) else None
    listed = allowed.get("tools") if isinstance(allowed, dict) else None
    if mode not in ("auto", "required") or not isinstance(listed, list) or not listed:
        raise BadRequest(_SHAPE, param="tool_choice")
    keys = _allowed_keys(listed)
    tools = body.get("tools") or []
    if not keys <= {_tool_key(tool) for tool in tools}:
        raise BadRequest(_SHAPE, param="tool_choice")
    kept = [tool for tool in tools if _tool_key(tool) in keys]
    return {**body, "tools": kept, "tool_choice": mode}


def responses_allowed_tools(choice: JSON) -> JSON:
    """The Responses API's flat ``{"type": "allowed_tools", "mode", "tools"}`` in chat's form."""
    listed = choice.get("tools")
    if not isinstance(listed, list):
        raise BadRequest(_SHAPE.replace(".allowed_tools", ""), param="tool_choice")
    tools = [
        {"type": "function", "function": {"name": item.get("name")}}
        if isinstance(item, dict) and item.get("type", "function") == "function"
        else item
        for item in listed
    ]
    return {"type": "allowed_tools", "allowed_tools": {"mode": choice.get("mode"), "tools": tools}}
