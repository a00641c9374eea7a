"""Chatbot Arena's other published layouts, read as battles (``prompt, model_a, model_b, winner``).

- Kaggle's ``lmsys-arena-human-preference-55k`` (and RouteLLM's data built from it): the outcome
  is one-hot in ``winner_model_a``, ``winner_model_b``, ``winner_tie``, and ``prompt`` holds the
  conversation's user turns as a JSON list of strings (``["first turn", "second turn"]``).
- ``lmsys/chatbot_arena_conversations``: no prompt column; the prompt is the user turns of
  ``conversation_a`` (a list of ``{role, content}``; both sides were asked the same turns).

A frame already holding ``winner`` and ``prompt`` is returned as it is.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from training.cells import is_empty, parse_number
from training.dataset_files import MAX_ERRORS, DatasetInvalidError, printable

ONE_HOT = ("winner_model_a", "winner_model_b", "winner_tie")
ONE_HOT_WINNERS = ("model_a", "model_b", "tie")
CONVERSATION = "conversation_a"


def is_arena_frame(names: set[str]) -> bool:
    """Battles in one of the layouts above: both models and an outcome, one way or the other."""
    if not {"model_a", "model_b"} <= names:
        return False
    return "winner" in names or all(c in names for c in ONE_HOT)


def battles_frame(frame: pd.DataFrame, prompt_column: str | None) -> pd.DataFrame:
    """``frame`` with ``winner`` and ``prompt`` derived where its layout holds them otherwise."""
    names = {str(c) for c in frame.columns}
    one_hot = "winner" not in names
    from_conversation = prompt_column is None and "prompt" not in names and CONVERSATION in names
    if not one_hot and not from_conversation:
        return frame
    frame = frame.copy()
    errors: list[dict[str, Any]] = []
    if one_hot:
        frame["winner"] = [_one_hot_winner(r, i, errors) for i, r in _rows(frame, ONE_HOT)]
        if prompt_column is None and "prompt" in names:
            frame["prompt"] = [_turns(v) for v in frame["prompt"]]
    if from_conversation:
        frame["prompt"] = [_user_turns(v, i, errors) for i, v in enumerate(frame[CONVERSATION], 1)]
    if errors:
        raise DatasetInvalidError(errors)
    return frame


def _rows(frame: pd.DataFrame, columns: tuple[str, ...]) -> Any:
    return enumerate(frame[list(columns)].itertuples(index=False, name=None), start=1)


def _one_hot_winner(cells: tuple[Any, ...], row: int, errors: list[dict[str, Any]]) -> str:
    try:
        flags = [parse_number(c, allow_bool=True) for c in cells]
    except (ValueError, TypeError):
        flags = []
    if len(flags) == len(ONE_HOT) and sorted(flags, key=lambda f: f or 0) == [0, 0, 1]:
        return ONE_HOT_WINNERS[flags.index(1)]
    if len(errors) < MAX_ERRORS:
        shown = printable(", ".join(str(c)[:10] for c in cells))
        errors.append(
            {
                "row": row,
                "column": "winner_model_a",
                "message": f"Row {row}: winner_model_a, winner_model_b and winner_tie must hold "
                f"exactly one 1 and two 0s (found {shown}).",
            }
        )
    return ""


def _turns(value: Any) -> Any:
    """A JSON list of strings (the 55k file's prompt cells) as its turns, one per line."""
    if not isinstance(value, str) or not value.lstrip().startswith('["'):
        return value
    try:
        turns = json.loads(value)
    except ValueError:
        return value
    if not isinstance(turns, list) or not all(isinstance(t, str | None) for t in turns):
        return value
    return "\n".join(t for t in turns if t)


def _user_turns(value: Any, row: int, errors: list[dict[str, Any]]) -> str:
    try:
        messages = json.loads(value) if isinstance(value, str) else value
        if isinstance(messages, np.ndarray):
            messages = messages.tolist()
        if not isinstance(messages, list):
            raise TypeError
        turns = [m.get("content") for m in messages if m.get("role") == "user"]
        return "\n".join(t for t in turns if isinstance(t, str) and not is_empty(t))
    except (ValueError, TypeError, AttributeError):
        if len(errors) < MAX_ERRORS:
            message = f"Row {row}: {CONVERSATION} must be a list of {{role, content}} messages."
            errors.append({"row": row, "column": CONVERSATION, "message": message})
        return ""
