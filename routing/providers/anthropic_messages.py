"""OpenAI chat messages → Anthropic's ``system`` and turns, and signed thinking blocks ↔
OpenRouter's ``reasoning_details`` (the Anthropic ingress shares the latter pair).

Anthropic wants the system prompt as a top-level field, tool results as ``tool_result`` blocks
inside a user turn (a failed one with ``is_error``, as /v1/messages gave it), and consecutive
same-role turns merged; prompt-caching marks ride on the block they end.
"""

from __future__ import annotations

from typing import Any

from routing.providers.base import (
    JSON,
    content_parts,
    data_url_split,
    json_loads_lenient,
    text_of,
    tool_failed,
)
from routing.providers.cache_marks import mark_of
from routing.providers.media import document_block
from routing.providers.refusals import assistant_parts


def _image_block(url: str) -> JSON:
    inline = data_url_split(url)
    if inline is not None:
        media_type, data = inline
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _user_blocks(content: Any) -> list[JSON]:
    blocks: list[JSON] = []
    for part in content_parts(content):
        count = len(blocks)
        if part.get("type") == "text" and part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image_url":
            image = part.get("image_url") or {}
            blocks.append(_image_block(image.get("url", "") if isinstance(image, dict) else image))
        elif part.get("type") == "file":
            file = part.get("file") or {}
            url = str(file.get("file_data", ""))
            is_image = url.startswith("data:image/")  # a picture sent as a file: an image block
            blocks.append(_image_block(url) if is_image else document_block(file))
        mark = mark_of(part)
        if mark and len(blocks) > count:
            blocks[-1]["cache_control"] = mark  # a prompt-caching breakpoint, as sent
    return blocks


def _tool_result_content(content: Any) -> str | list[JSON]:
    """A tool message's content as a ``tool_result``'s: its text, or text, image and document
    blocks when the tool returned media (a screenshot), which Anthropic reads there. A part's
    prompt-caching mark rides on the ``tool_result`` itself (``messages_to_anthropic``)."""
    parts = content_parts(content)
    if all(part.get("type") == "text" for part in parts):
        return text_of(content)
    blocks = _user_blocks(parts)
    for block in blocks:
        block.pop("cache_control", None)
    return blocks


def _assistant_blocks(message: JSON) -> list[JSON]:
    # Signed thinking goes back first, as Anthropic requires when a tool call follows it.
    blocks = [
        thinking_block(detail)
        for detail in message.get("reasoning_details") or []
        if isinstance(detail, dict)
        and (detail.get("signature") or detail.get("type") == "reasoning.encrypted")
    ]
    blocks += _user_blocks(assistant_parts(message))  # a replayed refusal: the turn's text
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{len(blocks)}",
                "name": function.get("name", ""),
                "input": json_loads_lenient(function.get("arguments") or ""),
            }
        )
    return blocks


def _system_blocks(message: JSON) -> list[JSON]:
    blocks = [block for block in _user_blocks(message.get("content")) if block["type"] == "text"]
    if mark_of(message) and blocks:
        blocks[-1]["cache_control"] = mark_of(message)
    return blocks


def messages_to_anthropic(
    messages: list[JSON], failed_tools: frozenset[str] = frozenset()
) -> tuple[str | list[JSON], list[JSON]]:
    """OpenAI messages → (system, Anthropic turns with same-role turns merged). The system is
    text, or text blocks when a prompt-caching mark needs one to sit on. ``failed_tools``:
    ``Target.failed_tools``."""
    system: list[JSON] = []
    texts: list[str] = []
    turns: list[JSON] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_system_blocks(message))
            texts.append(text_of(message.get("content")))
            continue
        if role == "tool":
            marks = [mark_of(p) for p in content_parts(message.get("content")) if mark_of(p)]
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": message.get("tool_call_id", ""),
                    "content": _tool_result_content(message.get("content")),
                }
                | ({"is_error": True} if tool_failed(message, failed_tools) else {})
                | ({"cache_control": marks[-1]} if marks else {})
            ]
            role = "user"
        elif role == "assistant":
            blocks = _assistant_blocks(message)
        else:
            role = "user"
            blocks = _user_blocks(message.get("content"))
        if not blocks:
            continue
        if mark_of(message):  # a message's mark is its last block's (OpenRouter's convention)
            blocks[-1]["cache_control"] = mark_of(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if any("cache_control" in block for block in system):
        return system, turns
    return "\n\n".join(text for text in texts if text), turns


def reasoning_detail(block: JSON) -> JSON:
    """A ``thinking`` / ``redacted_thinking`` block → OpenRouter's ``reasoning_details`` item."""
    if block.get("type") == "redacted_thinking":
        return {"type": "reasoning.encrypted", "data": str(block.get("data", ""))}
    return {
        "type": "reasoning.text",
        "text": str(block.get("thinking", "")),
        "signature": str(block.get("signature", "")),
    }


def thinking_block(detail: JSON) -> JSON:
    """A ``reasoning_details`` item → the Anthropic block it came from."""
    if detail.get("type") == "reasoning.encrypted":
        return {"type": "redacted_thinking", "data": str(detail.get("data", ""))}
    return {
        "type": "thinking",
        "thinking": str(detail.get("text") or ""),
        "signature": str(detail.get("signature") or ""),
    }
