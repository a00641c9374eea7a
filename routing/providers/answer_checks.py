"""A whole OpenAI-format answer's message checked and put in canonical form before it is billed
(``OpenAICompatAdapter.parse_response``), as ``stream_checks`` does for a stream's chunks.

Every shape OpenAI's and Mistral's wire formats allow is read: ``content`` a string, null (a
tool call, a refusal) or a list of parts — ``text`` and ``refusal`` parts, and Mistral's
``thinking`` parts (Magistral: a ``ThinkChunk`` whose ``thinking`` is a list of text chunks) —
parts of other types (Mistral's ``reference``) left out, as the stream path leaves them. The
canonical message has string ``content``, ``reasoning`` and ``refusal``, so every encoder after
it (Messages, Responses, billing's counts) reads one shape. Anything else is an
``UpstreamError``: a malformed answer, tried on the next candidate and never billed, as a body
that is not JSON is — never an exception after billing."""

from __future__ import annotations

from typing import Any

import orjson

from routing.providers.base import JSON, UpstreamError, text_of

# The fields of a message or stream delta that hold what the model generated, the one list every
# reader takes them from (the checks here and in ``stream_checks``, billing's estimates, what
# counts as an answer). DeepSeek's and vLLM's reasoning comes as ``reasoning_content`` (vLLM,
# between two releases, as both names: the same text, counted once).
REASONING_FIELDS = ("reasoning", "reasoning_content")
TEXT_FIELDS = ("content", "refusal", *REASONING_FIELDS)
OTHER_TEXT_FIELDS = TEXT_FIELDS[1:]  # the string-or-null ones: ``content`` may also be a list
# A tool call's generated parts: OpenAI's ``function`` calls and its ``custom`` (free-form) ones.
CALL_FIELDS = (("function", ("name", "arguments")), ("custom", ("name", "input")))
DETAIL_FIELDS = ("text", "signature", "data")  # a reasoning_details entry's strings


def generated_chars(part: JSON) -> int:
    """The characters a model generated in a whole answer's message or a stream delta, as the
    estimates bill them when no count comes: text, refusal, reasoning (its two names counted
    once: the longer, one may be a summary of the other) and every tool call's name and
    arguments (``custom`` calls: their ``input``). Before, a whole answer counted no tool name
    and a stream no ``custom`` input: the same answer billed differently streamed or not."""
    total = len(_text(part.get("content"))) + len(_text(part.get("refusal")))
    total += max((len(_str_or_empty(part.get(name))) for name in REASONING_FIELDS), default=0)
    for call in part.get("tool_calls") or []:
        for kind, fields in CALL_FIELDS:
            body = call.get(kind) if isinstance(call, dict) else None
            if isinstance(body, dict):
                total += sum(len(_str_or_empty(body.get(name))) for name in fields)
    return total


def has_answer(part: JSON) -> bool:
    """Whether a message or a stream delta holds anything to serve: text, reasoning, a refusal
    or a tool call."""
    return bool(_text(part.get("content"))) or any(
        part.get(name) for name in (*OTHER_TEXT_FIELDS, "tool_calls")
    )


def _str_or_empty(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _text(content: Any) -> str:
    return text_of(content) if isinstance(content, list) else _str_or_empty(content)


def parts_read(parts: list[Any]) -> JSON:
    """A list ``content`` as canonical strings: text parts are ``content``, thinking parts
    ``reasoning``, refusal parts ``refusal``; the fields with no text are left out. Raises
    ``TypeError`` on a part whose text is not text (the callers make it a malformed answer)."""
    read: JSON = {}
    texts = {"content": "", "reasoning": "", "refusal": ""}
    for part in parts:
        if not isinstance(part, dict):
            raise TypeError("a content part that is not an object")
        kind = part.get("type")
        if kind == "thinking":
            thinking = part.get("thinking")
            texts["reasoning"] += thinking if isinstance(thinking, str) else text_of(thinking)
        elif kind == "refusal":
            texts["refusal"] += _string(part.get("refusal"))
        elif kind == "text" and not isinstance(part.get("text"), str):
            raise TypeError("a text part whose text is not a string")
    texts["content"] = text_of(parts)  # its parts checked first: a null text says so
    for name, text in texts.items():
        if text:
            read[name] = text
    return read


def message_read(sent: Any) -> JSON:
    """A whole answer's message, checked and canonical (module docstring); ``UpstreamError``
    saying what is wrong when it has no shape the wire formats allow."""
    if not isinstance(sent, dict):
        raise _malformed("a message that is not an object")
    message: JSON = dict(sent)
    message.setdefault("role", "assistant")
    content = message.get("content")
    try:
        if isinstance(content, list):
            read = parts_read(content)
            message["content"] = read.pop("content", None)
            for name, text in read.items():
                message[name] = (_string(message.get(name)) or "") + text
        elif content is not None and not isinstance(content, str):
            raise TypeError("content that is neither text, null nor a list of parts")
        for name in OTHER_TEXT_FIELDS:
            _string(message.get(name))
        _calls_check(message.get("tool_calls"))
        _details_check(message.get("reasoning_details"))
    except TypeError as exc:
        raise _malformed(str(exc)) from None
    message.setdefault("content", None)
    return message


def finish_reason_read(choice: JSON) -> str | None:
    reason = choice.get("finish_reason")
    if reason is not None and not isinstance(reason, str):
        raise _malformed("a finish_reason that is not a string")
    return reason


def _string(value: Any) -> str:
    if value is not None and not isinstance(value, str):
        raise TypeError("a text field that is not a string")
    return value or ""


def _calls_check(calls: Any) -> None:
    if calls is None:
        return
    if not isinstance(calls, list):
        raise TypeError("tool_calls that are not a list")
    for call in calls:
        if not isinstance(call, dict):
            raise TypeError("a tool call that is not an object")
        _string(call.get("id"))
        # OpenAI's ``custom`` tool calls carry ``custom: {name, input}`` and no ``function``
        # (a client tool the gateway accepts, ``base.CLIENT_TOOL_TYPES``), as streamed ones do.
        for kind, fields in CALL_FIELDS:
            body = call.get(kind)
            if body is not None and not isinstance(body, dict):
                raise TypeError(f"a tool call whose {kind} is not an object")
            if kind == "function" and isinstance((body or {}).get("arguments"), dict):
                # Mistral's SDK types arguments as Dict or str: an object is its JSON text.
                body["arguments"] = orjson.dumps(body["arguments"]).decode()  # type: ignore[index]
            for name in fields:
                _string((body or {}).get(name))


def _details_check(details: Any) -> None:
    if details is None:
        return
    if not isinstance(details, list) or not all(isinstance(d, dict) for d in details):
        raise TypeError("reasoning_details that are not a list of objects")
    for detail in details:
        for name in DETAIL_FIELDS:
            _string(detail.get(name))


def _malformed(problem: str) -> UpstreamError:
    return UpstreamError(f"The provider sent a malformed answer: {problem}.")
