"""One upstream stream event through its decoder, checked for the shapes every encoder after it
reads (the Messages and Responses encoders, the OpenAI chunks, billing's counts): a provider's
chunk of the wrong shape — ``"choices": [1]``, a tool call whose ``index`` is an object — is an
``UpstreamError`` (a malformed stream, billed and answered as one), never an exception that
escapes the relay and cuts the client's stream with what was answered billed 0."""

from __future__ import annotations

from routing.providers.base import JSON, StreamDecoder, UpstreamError

_TEXTS = ("role", "content", "reasoning", "refusal")


def choices_fed(decoder: StreamDecoder, event: str | None, data: str) -> list[JSON]:
    """``decoder.feed(event, data)``, its choices checked (``UpstreamError`` if malformed)."""
    try:
        choices = decoder.feed(event, data)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
        problem: str | None = f"it could not be read ({type(exc).__name__})"
    else:
        problem = _choices_problem(choices)
    if problem is not None:
        raise UpstreamError(f"The provider sent a malformed stream chunk: {problem}.")
    return choices


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def _choices_problem(choices: object) -> str | None:
    if not isinstance(choices, list):
        return "no list of choices"
    for choice in choices:
        if not isinstance(choice, dict) or not _is_index(choice.get("index", 0)):
            return "a choice that is not an object with an integer index"
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            return "a delta that is not an object"
        if not all(isinstance(delta.get(name) or "", str) for name in _TEXTS):
            return "a delta whose text is not a string"
        if not isinstance(choice.get("finish_reason") or "", str):
            return "a finish_reason that is not a string"
        problem = _calls_problem(delta.get("tool_calls"))
        if problem is not None:
            return problem
    return None


def _calls_problem(calls: object) -> str | None:
    if calls is None:
        return None
    if not isinstance(calls, list):
        return "tool_calls that are not a list"
    for call in calls:
        if not isinstance(call, dict) or not _is_index(call.get("index", 0)):
            return "a tool call that is not an object with an integer index"
        function = call.get("function") or {}
        if not isinstance(function, dict) or not isinstance(call.get("id") or "", str):
            return "a tool call whose function is not an object or whose id is not a string"
        if not all(isinstance(function.get(name) or "", str) for name in ("name", "arguments")):
            return "a tool call whose name or arguments are not strings"
    return None
