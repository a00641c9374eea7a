"""What the fake's Anthropic wire refuses with a 400 ``invalid_request_error``, as Anthropic
does: malformed ``thinking``, and a tool result's ``is_error`` that is not a boolean."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


def _is_error_refusal(body: JSON) -> str | None:
    """A ``tool_result`` whose ``is_error`` is there but not a boolean: Anthropic's 400."""
    for i, message in enumerate(body.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        for j, block in enumerate(content if isinstance(content, list) else []):
            result = isinstance(block, dict) and block.get("type") == "tool_result"
            failed = block.get("is_error") if result else None
            if failed is not None and not isinstance(failed, bool):
                where = f"messages.{i}.content.{j}.tool_result.is_error"
                return f"{where}: Input should be a valid boolean"
    return None


def anthropic_refusal(body: JSON) -> str | None:
    """What Anthropic answers 400 ``invalid_request_error`` to in ``thinking`` and in a tool
    result's ``is_error``, as it does."""
    refused = _is_error_refusal(body)
    if refused is not None:
        return refused
    thinking = body.get("thinking")
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or thinking.get("type") not in (
        "enabled",
        "adaptive",
        "disabled",
    ):
        return "thinking: Input tag does not match any of the expected tags"
    budget, max_tokens = thinking.get("budget_tokens"), body.get("max_tokens")
    if thinking["type"] != "enabled":
        return None
    if not isinstance(budget, int) or budget < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if isinstance(max_tokens, int) and budget >= max_tokens:
        return "`max_tokens` must be greater than `thinking.budget_tokens`"
    return None
