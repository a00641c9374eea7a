"""A cascade step's post-call gate: does its answer pass (``routing.pipeline_spec`` validated
the gate when the pipeline was created)? Garbage never raises: it fails the gate."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import orjson

# Gates read at most this much of an answer (a regex over megabytes would hold the event loop).
GATE_MAX_CHARS = 100_000
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def gate_passes(gate: dict[str, Any] | None, answer: str) -> bool:
    """Whether ``answer`` passes ``gate``; no gate: any answer passes."""
    if gate is None:
        return True
    text = answer[:GATE_MAX_CHARS]
    kind = gate["type"]
    if kind == "non_empty":
        return bool(text.strip())
    if kind == "regex":
        return re.search(gate["pattern"], text) is not None
    value = _json_value(text)
    if value is None:
        return False
    if kind == "json":
        return True
    return bool(jsonschema.Draft202012Validator(gate["schema"]).is_valid(value[0]))


def _json_value(text: str) -> tuple[Any] | None:
    """The answer's JSON value (a fenced ```json block is unwrapped), or None if it is not JSON."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    try:
        return (orjson.loads(fenced[1] if fenced else stripped),)
    except orjson.JSONDecodeError:
        return None
