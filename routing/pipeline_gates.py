"""A cascade step's post-call gate: does its answer pass (``routing.pipeline_spec`` validated
the gate when the pipeline was created)? Garbage never raises: it fails the gate.

``gate_passes`` decides the cheap gates that read only the answer. The gateway runs regex and
JSON-schema gates out of process (``routing.gateway.regex_gate``); a judge gate asks a model
and reads its reply with ``judge_verdict``; a logprob gate reads ``mean_logprob`` of the
provider's log probabilities. ``answer_normalised`` is what a parallel pipeline's majority vote compares.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import orjson

# Gates read at most this much of an answer (a regex over megabytes would hold the event loop).
GATE_MAX_CHARS = 100_000
_FENCE = "```"


def gate_passes(gate: dict[str, Any] | None, answer: str) -> bool:
    """Whether ``answer`` passes a ``non_empty`` or ``json`` gate; no gate: any answer passes.
    Regex and JSON-schema gates never run here, on the gateway's event loop: a tenant's pattern
    or schema can take minutes (``routing.gateway.regex_gate`` runs them out of process)."""
    if gate is None:
        return True
    text = answer[:GATE_MAX_CHARS]
    kind = gate["type"]
    if kind == "non_empty":
        return bool(text.strip())
    if kind == "json":
        return json_value(text) is not None
    raise ValueError(f"a {kind} gate runs out of process (routing.gateway.regex_gate)")


def json_value(text: str) -> tuple[Any] | None:
    """The answer's JSON value (a fenced ```json block is unwrapped), or None if it is not JSON.

    No regex: ``^```(?:json)?\\s*(.*?)\\s*```$`` backtracked cubically over whitespace (a
    fence and 5,000 spaces held the event loop three minutes)."""
    stripped = text.strip()
    if (
        len(stripped) >= 2 * len(_FENCE)
        and stripped.startswith(_FENCE)
        and stripped.endswith(_FENCE)
    ):
        stripped = stripped[len(_FENCE) : -len(_FENCE)].removeprefix("json").strip()
    try:
        return (orjson.loads(stripped),)
    except orjson.JSONDecodeError:
        return None


def answer_normalised(answer: str) -> str:
    """An answer as a majority vote compares it: surrounding whitespace stripped, case-folded,
    every run of whitespace one space, and trailing punctuation (Unicode category P) removed."""
    text = " ".join(answer[:GATE_MAX_CHARS].casefold().split())
    end = len(text)
    while end and unicodedata.category(text[end - 1]).startswith("P"):
        end -= 1
    return text[:end].rstrip()


_VERDICT = re.compile(r"^\W*(pass|fail|-?\d+(?:\.\d+)?)\b", re.IGNORECASE)


def judge_verdict(reply: str, min_score: float) -> bool | None:
    """A judge's reply read as a verdict: PASS or FAIL (any case, at the start), or a number
    compared with ``min_score``; None for anything else (the gate then fails as garbage)."""
    match = _VERDICT.match(reply[:200])
    if match is None:
        return None
    word = match[1].casefold()
    if word in ("pass", "fail"):
        return word == "pass"
    return float(word) >= min_score


def mean_logprob(choice: dict[str, Any]) -> float | None:
    """The mean token log probability of an answer's content, None when the provider sent none
    (or sent something that is not a list of numbers)."""
    content = (choice.get("logprobs") or {}).get("content") if isinstance(choice, dict) else None
    if not isinstance(content, list) or not content:
        return None
    values = [token.get("logprob") if isinstance(token, dict) else None for token in content]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]
