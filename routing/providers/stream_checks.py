"""One upstream stream event through its decoder, checked for the shapes every encoder after it
reads (the Messages and Responses encoders, the OpenAI chunks, billing's counts): a provider's
chunk of the wrong shape — ``"choices": [1]``, a tool call whose ``index`` is an object — is an
``UpstreamError`` (a malformed stream, billed and answered as one), never an exception that
escapes the relay and cuts the client's stream with what was answered billed 0."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import TypeVar

from routing.providers.answer_checks import CALL_FIELDS, DETAIL_FIELDS, TEXT_FIELDS
from routing.providers.base import JSON, StreamDecoder, UpstreamError

log = logging.getLogger(__name__)
# The fields a whole answer's checks read (``answer_checks``), and the delta's role. Before, its
# own list: ``reasoning_content``, a custom tool call and a reasoning detail's text and data went
# unchecked in a stream (relayed whatever they were) though a whole answer refused them.
_TEXTS = ("role", *TEXT_FIELDS)
_T = TypeVar("_T")


def choices_fed(decoder: StreamDecoder, event: str | None, data: str) -> list[JSON]:
    """``decoder.feed(event, data)``, its choices checked (``UpstreamError`` if malformed)."""
    choices = chunk_read(lambda: decoder.feed(event, data), type(decoder).__name__)
    problem = _choices_problem(choices)
    if problem is not None:
        raise UpstreamError(f"The provider sent a malformed stream chunk: {problem}.")
    return choices


def chunk_read(read: Callable[[], _T], reader: str) -> _T:
    """``read()`` (a decoder or encoder reading a stream chunk); an error reading it is a
    malformed stream (``UpstreamError``). It may as well be a bug of ours, so it is logged — the
    exception's type and where it was raised, never its message: that may quote the chunk."""
    try:
        return read()
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        where = " < ".join(f"{f.filename}:{f.lineno} {f.name}" for f in reversed(frames))
        log.warning("%s could not read a stream chunk: %s at %s", reader, type(exc).__name__, where)
        problem = f"it could not be read ({type(exc).__name__})"
        raise UpstreamError(f"The provider sent a malformed stream chunk: {problem}.") from None


def _is_text(value: object) -> bool:
    """A string or null, as a whole answer's checks take them (``answer_checks._string``).
    Before, ``value or ""``: an empty non-string (``{}``, ``false``, ``[]``, ``0``) passed in a
    stream though a whole answer refused it."""
    return value is None or isinstance(value, str)


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def _choices_problem(choices: object) -> str | None:
    if not isinstance(choices, list):
        return "no list of choices"
    for choice in choices:
        if not isinstance(choice, dict) or not _is_index(choice.get("index", 0)):
            return "a choice that is not an object with an integer index"
        # Only an absent or null delta is empty: ``or {}`` let a falsy non-object (``[]``,
        # ``0``, ``""``, ``false``) pass as one though any other non-object was refused.
        delta = choice.get("delta")
        delta = {} if delta is None else delta
        if not isinstance(delta, dict):
            return "a delta that is not an object"
        if not all(_is_text(delta.get(name)) for name in _TEXTS):
            return "a delta whose text is not a string"
        if not _is_text(choice.get("finish_reason")):
            return "a finish_reason that is not a string"
        if not _details_valid(delta.get("reasoning_details")):
            return "reasoning_details that are not a list of objects with string texts"
        problem = _calls_problem(delta.get("tool_calls"))
        if problem is not None:
            return problem
    return None


def _details_valid(details: object) -> bool:
    if details is None:
        return True
    return isinstance(details, list) and all(
        isinstance(detail, dict) and all(_is_text(detail.get(name)) for name in DETAIL_FIELDS)
        for detail in details
    )


def _calls_problem(calls: object) -> str | None:
    if calls is None:
        return None
    if not isinstance(calls, list):
        return "tool_calls that are not a list"
    for call in calls:
        if not isinstance(call, dict) or not _is_index(call.get("index", 0)):
            return "a tool call that is not an object with an integer index"
        if not _is_text(call.get("id")):
            return "a tool call whose id is not a string"
        for kind, fields in CALL_FIELDS:
            body = call.get(kind)
            if body is None:
                continue
            if not isinstance(body, dict):
                return f"a tool call whose {kind} is not an object"
            if not all(_is_text(body.get(name)) for name in fields):
                return f"a tool call whose {' or '.join(fields)} are not strings"
    return None
