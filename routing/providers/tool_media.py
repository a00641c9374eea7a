"""Media a tool returned (a chat ``tool`` message's ``image_url`` or ``file`` parts), moved where
a wire that cannot carry it in a tool result reads it: a user message after the tool messages.

OpenAI's chat wire takes text parts only in a tool message, and Gemini's ``functionResponse`` is
a JSON object; both read media in the user turn that follows (where ``/v1/messages`` puts a
``tool_result``'s images for every provider). Anthropic's ``tool_result`` holds images and
documents itself, so its adapter keeps them there."""

from __future__ import annotations

from typing import Any

from routing.providers.base import JSON

# What a tool message whose content was all media says instead (an empty result reads as "the
# tool returned nothing"; Gemini wraps it in its ``functionResponse`` object as ``content``).
MEDIA_MOVED = "(media returned; see the next user message)"


def _media_split(message: JSON) -> tuple[JSON, list[JSON]]:
    """A tool message → (it with its text parts only, its other parts after a text part naming
    the tool call they came from: several tools' media share one user message)."""
    content = message.get("content")
    if message.get("role") != "tool" or not isinstance(content, list):
        return message, []
    media = [p for p in content if isinstance(p, dict) and p.get("type") != "text"]
    if not media:
        return message, []
    texts = [p for p in content if not (isinstance(p, dict) and p.get("type") != "text")]
    source = {"type": "text", "text": f"[returned by tool call {message.get('tool_call_id')}]"}
    return message | {"content": texts or MEDIA_MOVED}, [source, *media]


def tool_media_lifted(messages: list[Any]) -> list[Any]:
    """``messages`` with each tool message's media moved into one user message after its run of
    tool messages (OpenAI wants an assistant's tool calls answered by tool messages only, right
    after it); the very list when no tool message carries any."""
    out: list[Any] = []
    media: list[JSON] = []
    for message in messages:
        is_tool = isinstance(message, dict) and message.get("role") == "tool"
        if media and not is_tool:
            out.append({"role": "user", "content": media})
            media = []
        if is_tool:
            message, lifted = _media_split(message)
            media.extend(lifted)
        out.append(message)
    if media:
        out.append({"role": "user", "content": media})
    return out if len(out) != len(messages) else messages
