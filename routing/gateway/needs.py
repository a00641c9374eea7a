"""What a chat request requires of an endpoint (tools, images, files, JSON schema, parameters that
change the answer's shape), and whether an endpoint can honour it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from routing.gateway.catalog_cache import EndpointInfo
from routing.providers.base import (
    GATEWAY_PARAMETERS,
    JSON,
    NO_MARKS,
    IngressMarks,
    content_part_kinds,
)

# Why a request no endpoint can honour is refused, after "supports '<param>' as requested".
GAP_HINTS = {
    "tools": ": the model calls no tools, or a tool of another type than function (custom, …) "
    "went to a provider with function tools only (those pass only to OpenAI-style hosts). Choose "
    "a model whose supported_parameters in GET /v1/models list tools, or send function tools.",
    "n": ": one choice per request there (Anthropic-style providers return one); send n "
    "requests, or choose a model whose supported_parameters in GET /v1/models list n.",
    "logprobs": ": that provider returns no log probabilities; leave logprobs out, or choose a "
    "model whose supported_parameters in GET /v1/models list logprobs.",
    "messages": ": a content part (image, file, audio) its provider or model cannot read. A file "
    "part needs its bytes inline (file_data, a data: URL): a file_id names a file only the host "
    "it was uploaded to knows. Choose a model that reads it (GET /v1/models) or leave it out.",
}
_DOCUMENT_PARTS = frozenset({"file", "file_id"})  # PDFs are read as pages: vision models only


_OMITTED = {"image_url": "image", "file": "file", "file_id": "file", "input_audio": "audio"}


def _current_turn(messages: list[JSON], marks: IngressMarks) -> list[JSON]:
    """The latest turn's own media: messages after the last assistant message, without what a
    tool returned (a chat tool message's parts, ``marks.tool_media``). Only these must be
    readable; earlier turns' media (history) and tool results' become placeholders where the
    model reads none (``readable_body``)."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    return [
        {"content": [p for p in m["content"] if isinstance(p, dict) and not marks.is_tool_media(p)]}
        for m in messages[last + 1 :]
        if isinstance(m.get("content"), list) and m.get("role") != "tool"
    ]


def _part_readable(kind: str, endpoint: EndpointInfo) -> bool:
    if kind in ("image_url", "file", "file_id") and not endpoint.supports_vision:
        return False
    return endpoint.content_kinds is None or kind in endpoint.content_kinds


def _readable_part(part: Any, endpoint: EndpointInfo) -> Any:
    if not isinstance(part, dict):
        return part
    kind = next(iter(content_part_kinds([{"content": [part]}])), "text")
    if kind == "text" or _part_readable(kind, endpoint):
        return part
    if kind == "file_id":
        return {"type": "text", "text": "[file omitted: a file_id only its own host can read]"}
    noun = _OMITTED.get(kind, kind)
    return {"type": "text", "text": f"[{noun} omitted: this model reads no {noun} input]"}


def readable_body(body: JSON, endpoint: EndpointInfo) -> JSON:
    """The request as this endpoint gets it: media it cannot read (in earlier turns, in tool
    results; planning refused the latest turn's own) replaced by a short text placeholder."""
    messages = []
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") != "text" for p in content
        ):
            content = [_readable_part(part, endpoint) for part in content]
            message = message | {"content": content}
        messages.append(message)
    return body | {"messages": messages}


@dataclass(frozen=True)
class Needs:
    """What the request requires of an endpoint."""

    tools: bool
    vision: bool
    json_schema: bool
    json_object: bool
    stream: bool
    parameters: frozenset[str] = field(default_factory=frozenset)
    embeddings: bool = False  # /v1/embeddings: only embedding models, which chat never gets
    # Content part kinds beside text (``content_part_kinds``): an adapter drops what it cannot send.
    parts: frozenset[str] = field(default_factory=frozenset)
    # Parameters whose loss changes the answer's shape (``choices[1]``, ``logprobs.content``),
    # honoured or refused even without ``require_parameters``: never dropped in silence.
    shape: frozenset[str] = field(default_factory=frozenset)
    # A tool of another type than function (OpenAI's custom tools, …): only OpenAI's wire has them.
    other_tools: bool = False


def request_needs(body: JSON, marks: IngressMarks = NO_MARKS) -> Needs:
    """``marks``: the ingress's (``IngressMarks``; media a tool returned is not the turn's own)."""
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    current = _current_turn(body["messages"], marks)
    vision = any(part.get("type") == "image_url" for m in current for part in m["content"])
    parameters = frozenset(
        name for name, value in body.items() if name not in GATEWAY_PARAMETERS and value is not None
    )
    parts = content_part_kinds(current)
    shape = {"n"} if isinstance(body.get("n"), int) and body["n"] > 1 else set()
    shape |= {"logprobs"} if body.get("logprobs") is True else set()
    return Needs(
        tools=bool(body.get("tools")),
        vision=vision or bool(parts & _DOCUMENT_PARTS),
        json_schema=kind == "json_schema",
        json_object=kind == "json_object",
        stream=bool(body.get("stream")),
        parameters=parameters,
        parts=parts,
        shape=frozenset(shape),
        other_tools=any(
            isinstance(tool, dict) and tool.get("type", "function") != "function"
            for tool in body.get("tools") or []
        ),
    )


def capability_gap(endpoint: EndpointInfo, needs: Needs, require_parameters: bool) -> str | None:
    """The parameter this endpoint cannot honour, or None when it can serve the request."""
    if needs.tools and not endpoint.supports_tools:
        return "tools"
    if needs.other_tools and endpoint.api_style != "openai":
        return "tools"
    if needs.vision and not endpoint.supports_vision:
        return "messages"
    if needs.json_schema and not endpoint.supports_structured_output:
        return "response_format"
    if needs.json_object and not (endpoint.supports_json or endpoint.supports_structured_output):
        return "response_format"
    if needs.stream and not endpoint.supports_streaming:
        return "stream"
    if endpoint.content_kinds is not None and needs.parts - endpoint.content_kinds:
        return "messages"
    if needs.shape - endpoint.supported_parameters:
        return min(needs.shape - endpoint.supported_parameters)
    if require_parameters:
        missing = sorted(needs.parameters - endpoint.supported_parameters)
        if missing:
            return missing[0]
    return None
