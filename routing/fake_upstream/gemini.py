"""Gemini's wire format in the fake: request reading, whole responses and stream events."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import orjson

from routing.fake_upstream.answers import Answer, Tool, count_tokens, split_tokens
from routing.fake_upstream.images import media_tokens
from routing.fake_upstream.wire import (
    JSON,
    Turn,
    _prompt_tokens,
    _reported,
    _text,
    _truncate,
)


def gemini_turn(body: JSON, model: str) -> Turn:
    contents = body.get("contents") or []
    last_parts = (contents[-1].get("parts") if contents else []) or []
    responses = [p["functionResponse"] for p in last_parts if "functionResponse" in p]
    users = [
        c
        for c in contents
        if c.get("role", "user") == "user" and any("text" in p for p in c.get("parts") or [])
    ]
    tools = [
        Tool(d["name"], d.get("parametersJsonSchema") or d.get("parameters") or {})
        for t in body.get("tools") or []
        for d in t.get("functionDeclarations") or []
    ]
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    allowed = calling.get("allowedFunctionNames") or []
    forced = allowed[0] if calling.get("mode") == "ANY" and allowed else None
    config = body.get("generationConfig") or {}
    texts = [_text((body.get("systemInstruction") or {}).get("parts"))] + [
        _text(c.get("parts")) for c in contents
    ]
    media = sum(media_tokens(c.get("parts"), model) for c in contents)
    return Turn(
        model=model,
        prompt=_text(users[-1]["parts"]) if users else "",
        prompt_tokens=_prompt_tokens(texts, media),
        prompt_texts=texts,
        media_tokens=media,
        tools=tools if calling.get("mode") != "NONE" else [],
        forced_tool=forced,
        tool_required=calling.get("mode") == "ANY",
        last_is_tool_result=bool(responses),
        tool_result=orjson.dumps(responses[-1].get("response")).decode() if responses else "",
        json_schema=config.get("responseSchema") or config.get("responseJsonSchema"),
        json_mode=config.get("responseMimeType") == "application/json",
        candidate_count=config.get("candidateCount"),
    )


# JSON Schema keywords outside the OpenAPI subset of Gemini's ``Schema`` message (the type of
# ``responseSchema`` and of a declaration's ``parameters``): the real API refuses the request
# ("Invalid JSON payload received. Unknown name ..."). ``responseJsonSchema`` and
# ``parametersJsonSchema`` take JSON Schema, references included.
_NOT_IN_SCHEMA_MESSAGE = ("$ref", "$defs", "definitions", "additionalProperties", "$schema")


_BESIDE_REF = {"$ref", "description", "default"}


def gemini_schema_refusal(body: JSON) -> str | None:
    """Gemini's 400 for a schema it refuses: a JSON Schema keyword in an OpenAPI-subset field, a
    ``$ref`` with more than a description or default beside it, ``responseJsonSchema`` without
    the JSON MIME type or together with ``responseSchema``."""
    config = body.get("generationConfig") or {}
    declarations = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
    if "responseJsonSchema" in config and "responseSchema" in config:
        return "response_schema and response_json_schema cannot both be set."
    if "responseJsonSchema" in config and config.get("responseMimeType") != "application/json":
        return "response_mime_type must be application/json when response_json_schema is set."
    subset = [("generation_config.response_schema", config.get("responseSchema"))] + [
        (f"tools[0].function_declarations[{i}].parameters", d.get("parameters"))
        for i, d in enumerate(declarations)
    ]
    for where, schema in subset:
        name = _find(
            schema, lambda node: next((k for k in node if k in _NOT_IN_SCHEMA_MESSAGE), None)
        )
        if name is not None:
            return f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field."
    for schema in [config.get("responseJsonSchema")] + [
        d.get("parametersJsonSchema") for d in declarations
    ]:
        ref = _find(
            schema,
            lambda node: node["$ref"] if "$ref" in node and set(node) - _BESIDE_REF else None,
        )
        if ref is not None:
            return (
                f"Schema.ref '{str(ref).rsplit('/', 1)[-1]}' was set alongside unsupported fields. If a "
                "schema node has Schema.ref set, then only description and default can be set alongside it."
            )
    return None


def _find(schema: object, found_in: Callable[[JSON], object]) -> object:
    """The first thing ``found_in`` finds in a schema node of ``schema``."""
    if isinstance(schema, list):
        return next((k for k in (_find(s, found_in) for s in schema) if k is not None), None)
    if not isinstance(schema, dict):
        return None
    found = found_in(schema)
    for key, value in schema.items():
        if found is not None:
            break
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            value = list(value.values())  # its keys are names, not keywords
        found = (
            _find(value, found_in)
            if key not in ("enum", "required", "default", "examples", "const")
            else None
        )
    return found


def gemini_usage(turn: Turn, completion: int, cached: int) -> JSON:
    thoughts = 9 if "pro" in turn.model or "thinking" in turn.model else 0
    usage = {
        "promptTokenCount": turn.prompt_tokens,
        "candidatesTokenCount": completion,
        "totalTokenCount": turn.prompt_tokens + completion + thoughts,
    }
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    if cached:
        usage["cachedContentTokenCount"] = min(cached, turn.prompt_tokens)
    return _reported(turn, usage, prompt="promptTokenCount", completion="candidatesTokenCount")


def _gemini_candidate(parts: list[JSON], finish: str | None) -> JSON:
    candidate: JSON = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return candidate


def _candidate_count(turn: Turn) -> int:
    """``generationConfig.candidateCount``: that many candidates (the same answer, as the fake
    has one), each counted in ``candidatesTokenCount`` as Gemini does."""
    count = turn.candidate_count
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 1 else 1


def _gemini_candidates(parts: list[JSON], finish: str | None, count: int) -> list[JSON]:
    return [_gemini_candidate(parts, finish) | {"index": index} for index in range(count)]


def gemini_response(turn: Turn, answer: Answer, cached: int, max_tokens: int | None) -> JSON:
    if answer.is_tool_call:
        parts: list[JSON] = [
            {"functionCall": {"name": answer.tool_name, "args": answer.tool_arguments}}
        ]
        finish, completion = "STOP", 12
    else:
        text, reason = _truncate(answer.text, max_tokens)
        parts = [{"text": text}]
        finish, completion = ("MAX_TOKENS" if reason == "length" else "STOP"), count_tokens(text)
    count = _candidate_count(turn)
    return {
        "candidates": _gemini_candidates(parts, finish, count),
        "usageMetadata": gemini_usage(turn, completion * count, cached),
        "modelVersion": turn.model,
        "responseId": "fake-response",
    }


def gemini_stream(
    turn: Turn, answer: Answer, cached: int, max_tokens: int | None
) -> Iterator[bytes]:
    whole = gemini_response(turn, answer, cached, max_tokens)
    parts = whole["candidates"][0]["content"]["parts"]
    finish = whole["candidates"][0]["finishReason"]
    pieces = (
        [parts]
        if answer.is_tool_call
        else [[{"text": piece}] for piece in split_tokens(parts[0]["text"])]
    )
    produced, count = 0, _candidate_count(turn)
    for position, piece_parts in enumerate(pieces):
        last = position == len(pieces) - 1
        produced += count_tokens(piece_parts[0].get("text", "")) if not answer.is_tool_call else 12
        data = {
            "candidates": _gemini_candidates(piece_parts, finish if last else None, count),
            "usageMetadata": gemini_usage(turn, produced * count, cached),
            "modelVersion": turn.model,
            "responseId": "fake-response",
        }
        yield b"data: " + orjson.dumps(data) + b"\r\n\r\n"
