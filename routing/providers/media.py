"""Inline media (base64 data, ``data:`` URLs) checked before any adapter decodes or forwards it:
malformed bytes are the client's mistake, answered with a 400 naming the field, never a 500."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from routing.providers.base import JSON, data_url_split


def is_base64(data: Any) -> bool:
    """Whether ``data`` is a string of standard base64 (padding included), as every provider
    takes inline bytes."""
    if not isinstance(data, str):
        return False
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def data_url_problem(url: Any, field: str) -> str | None:
    """What is wrong with a ``data:<media type>;base64,<data>`` URL, if anything."""
    if not isinstance(url, str):
        return f"needs {field} (a string)"
    if not url.startswith("data:"):
        return (
            f"needs {field} as a data: URL (data:application/pdf;base64,<data>), as OpenAI "
            "takes it; raw base64 carries no media type"
        )
    header, comma, data = url[5:].partition(",")
    if not comma or not header.endswith(";base64") or "/" not in header:
        return f"needs {field} as data:<media type>;base64,<data>"
    if not is_base64(data):
        return f"has {field} whose data is not valid base64"
    return None


def document_block(file: JSON) -> JSON:
    """(Anthropic) An OpenAI ``file`` part (inline ``file_data``, a data URL; planning sends no other kind
    here) → Anthropic's document block: a PDF as base64, plain text as a text source."""
    media_type, data = data_url_split(str(file.get("file_data", ""))) or ("application/pdf", "")
    block: JSON = {"type": "document"}
    if media_type == "text/plain":
        text = base64.b64decode(data).decode(errors="replace")
        block["source"] = {"type": "text", "media_type": media_type, "data": text}
    else:
        block["source"] = {"type": "base64", "media_type": media_type, "data": data}
    if file.get("filename"):
        block["title"] = str(file["filename"])
    return block
