"""Parsing one cell of an uploaded dataset: scores and costs, prompt text, OpenAI messages."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

TRUE_WORDS = {"true", "yes"}
FALSE_WORDS = {"false", "no"}


def is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


class AmbiguousNumberError(ValueError):
    """A cell that could be read as two different numbers; the message says how to write it."""


def _decimal_comma(word: str) -> str:
    """``0,75`` as ``0.75``: in a semicolon-separated file (a European locale's export) a comma is
    the decimal mark. A cell with a comma and a dot, or several commas, holds thousands
    separators (``1.234,5``, ``1,234,567``), and ``1.234`` elsewhere in its column would then be
    a thousand times off: refused, saying what to write instead."""
    if "," not in word:
        return word
    if "." in word or word.count(",") > 1:
        raise AmbiguousNumberError(
            "mixes thousands separators with a decimal comma; in a semicolon-separated file a "
            "comma is the decimal mark: write the number without thousands separators "
            "(1234,5 or 1234.5)"
        )
    return word.replace(",", ".")


def parse_number(value: Any, *, allow_bool: bool, decimal_comma: bool = False) -> float | None:
    """A float from a cell, ``None`` for an empty cell; ``ValueError`` when it is not a number.

    ``decimal_comma`` (semicolon-separated files only) also reads ``0,75`` as 0.75."""
    if is_empty(value):
        return None
    if isinstance(value, bool | np.bool_):
        if not allow_bool:
            raise ValueError
        return 1.0 if value else 0.0
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
    elif isinstance(value, str):
        word = value.strip().lower()
        if allow_bool and word in TRUE_WORDS:
            return 1.0
        if allow_bool and word in FALSE_WORDS:
            return 0.0
        number = float(_decimal_comma(word) if decimal_comma else word)
    else:
        raise ValueError
    if not math.isfinite(number):
        raise ValueError
    return number


def prompt_text(value: Any, column: str) -> str:
    """Prompt text of a cell: plain text, or OpenAI messages (JSON string or list) joined."""
    if is_empty(value):
        return ""
    if column == "messages" or (isinstance(value, str) and value.lstrip().startswith("[{")):
        messages = json.loads(value) if isinstance(value, str) else value
        if isinstance(messages, np.ndarray):
            messages = messages.tolist()
        if not isinstance(messages, list):
            raise ValueError("messages must be a JSON list of {role, content}")
        return "\n".join(_message_text(m) for m in messages).strip()
    if not isinstance(value, str):
        raise TypeError(f"prompts must be text, not {type(value).__name__}")
    return value


def _message_text(message: Any) -> str:
    if not isinstance(message, dict):
        raise ValueError("each message must be an object with role and content")
    content = message.get("content") or ""
    if isinstance(content, list | np.ndarray):
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return f"{message.get('role', 'user')}: {content}"
