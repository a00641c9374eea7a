"""OpenAI's ``tool_choice: {"type": "allowed_tools", ...}`` as every provider takes it."""

from __future__ import annotations

from routerhub.errors import BadRequest
from routing.providers.base import JSON

_SHAPE = (
    'tool_choice.allowed_tools must be {"mode": "auto" or "required", "tools": [{"type": '
    '"function", "function": {"name": ...}}, ...]}, each named tool one of tools.'
)


def _tool_name(tool: object) -> object:
    """A chat tool's (or tool reference's) name: ``function.name``, ``custom.name``..."""
    if not isinstance(tool, dict):
        return None
    inner = tool.get(tool.get("type", "function"))
    return inner.get("name") if isinstance(inner, dict) else None


def allowed_tools_applied(body: JSON) -> JSON:
    """The chat body with an ``allowed_tools`` choice as ``tools`` narrowed to the allowed ones
    and ``tool_choice`` its mode: what the model may call is the same, and Anthropic and Gemini
    have no such choice. (OpenAI keeps the whole list only to keep its prompt cache.) A choice
    naming a tool not in ``tools`` is a 400, as OpenAI answers it."""
    choice = body.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") != "allowed_tools":
        return body
    allowed = choice.get("allowed_tools")
    mode = allowed.get("mode") if isinstance(allowed, dict) else None
    listed = allowed.get("tools") if isinstance(allowed, dict) else None
    if mode not in ("auto", "required") or not isinstance(listed, list) or not listed:
        raise BadRequest(_SHAPE, param="tool_choice")
    names = {_tool_name(item) for item in listed}
    tools = body.get("tools")
    offered = {_tool_name(tool) for tool in tools} if isinstance(tools, list) else set()
    if None in names or not names <= offered:
        raise BadRequest(_SHAPE, param="tool_choice")
    kept = [tool for tool in tools or [] if _tool_name(tool) in names]
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
