"""Anthropic Messages as an ingress: ``/v1/messages`` requests → canonical, canonical → Messages.

This lets the official ``anthropic`` SDK call any catalog model: the request is translated to
the canonical (OpenAI) form, served by whichever adapter the endpoint needs, and the answer —
whole or streamed — is translated back into Messages JSON or Messages SSE events.
"""

from __future__ import annotations

import orjson

# The request side lives in anthropic_request; the gateway imports the codec from here.
from routing.ingress.anthropic_request import (
    messages_request_parsed as messages_request_parsed,
)
from routing.ingress.anthropic_request import (
    messages_request_to_canonical as messages_request_to_canonical,
)
from routing.providers.anthropic_messages import thinking_block
from routing.providers.base import JSON, Usage, json_loads_lenient

FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "function_call": "tool_use",
}
# Anthropic's error type for each status RouterHub answers (docs: "Errors"); the status stays
# RouterHub's, the type is the name the anthropic SDK and its users expect.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error(body: JSON, request_id: str) -> JSON:
    """RouterHub's error body → Anthropic's ``{"type": "error", "error": {...}, "request_id"}``.

    ``error.type`` becomes Anthropic's name for the status; RouterHub's own name stays readable
    as ``error.routerhub_type`` next to ``code``, ``param`` and ``metadata``."""
    error = dict(body.get("error") or {})
    status = error.get("code")
    ours = error.get("type", "api_error")
    error["type"] = ERROR_TYPES.get(status, "api_error") if isinstance(status, int) else "api_error"
    error["routerhub_type"] = ours
    return {"type": "error", "error": error, "request_id": request_id}


def anthropic_only_fields(request: JSON, api_style: str) -> list[str]:
    """What of ``request`` an endpoint of ``api_style`` ignores: ``thinking`` and
    ``output_config.effort`` have no faithful mapping outside Anthropic (a token budget is not
    a ``reasoning_effort``, and models without reasoning refuse that field)."""
    if api_style == "anthropic":
        return []
    dropped = []
    thinking = request.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") != "disabled":
        dropped.append("thinking")
    config = request.get("output_config")
    if isinstance(config, dict) and config.get("effort") is not None:
        dropped.append("output_config.effort")
    return dropped


def anthropic_usage(usage: Usage) -> JSON:
    written, hour = usage.cache_write_tokens, usage.cache_write_1h_tokens
    return {
        "input_tokens": max(usage.prompt_tokens - usage.cached_tokens - written, 0),
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": written,
        "cache_creation": {
            "ephemeral_5m_input_tokens": written - hour,
            "ephemeral_1h_input_tokens": hour,
        },
    }


def canonical_to_messages_response(response: JSON, usage: Usage) -> JSON:
    """A canonical chat.completion (first choice) → an Anthropic ``message`` object."""
    choice = (response.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[JSON] = [thinking_block(d) for d in message.get("reasoning_details") or []]
    if not content and message.get("reasoning"):  # reasoning from a model that signs nothing
        content.append({"type": "thinking", "thinking": message["reasoning"], "signature": ""})
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    refused = not content and bool(message.get("refusal"))
    if refused:  # OpenAI's refusal field: said as text, stopped as Anthropic's refusal
        content.append({"type": "text", "text": message["refusal"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": json_loads_lenient(function.get("arguments") or ""),
            }
        )
    answer: JSON = {
        "id": response["id"],
        "type": "message",
        "role": "assistant",
        "model": response["model"],
        "content": content,
        **stop_fields(
            "content_filter" if refused else choice.get("finish_reason"),
            choice.get("stop_sequence"),
        ),
        "usage": anthropic_usage(usage) | {"cost": response["usage"]["cost"]},
        "provider": response.get("provider"),
    }
    if response.get("routing") is not None:
        answer["routing"] = response["routing"]
    return answer


def stop_fields(finish_reason: str | None, stop_sequence: object) -> JSON:
    """``stop_reason`` and ``stop_sequence``: the matched sequence when the provider named it
    (Anthropic does), else the finish reason's Anthropic name and None."""
    if isinstance(stop_sequence, str):
        return {"stop_reason": "stop_sequence", "stop_sequence": stop_sequence}
    return {
        "stop_reason": FINISH_TO_STOP.get(finish_reason or "stop", "end_turn"),
        "stop_sequence": None,
    }


def sse_event(name: str, payload: JSON) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class MessagesStreamEncoder:
    """Canonical chunk choices in, Anthropic Messages SSE events out (one content block at a time)."""

    def __init__(self, message_id: str, model: str, routing: JSON | None = None) -> None:
        self.message_id = message_id
        self.model = model
        self.routing = routing
        self.started = False
        self.block_index = -1
        self.block_kind: str | None = None
        self.tool_blocks: dict[int, int] = {}  # OpenAI tool_calls index → block index
        self.finish_reason: str | None = None
        self.stop_sequence: object = None

    def start(self, usage: Usage | None) -> bytes:
        self.started = True
        message: JSON = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": anthropic_usage(usage or Usage()),
        }
        if self.routing is not None:
            message["routing"] = self.routing
        return sse_event(
            "message_start", {"type": "message_start", "message": message}
        ) + sse_event("ping", {"type": "ping"})

    def _close_block(self) -> bytes:
        if self.block_kind is None:
            return b""
        self.block_kind = None
        return sse_event(
            "content_block_stop", {"type": "content_block_stop", "index": self.block_index}
        )

    def _open_block(self, kind: str, block: JSON) -> bytes:
        out = self._close_block()
        self.block_index += 1
        self.block_kind = kind
        start = {"type": "content_block_start", "index": self.block_index, "content_block": block}
        return out + sse_event("content_block_start", start)

    def _delta(self, delta: JSON) -> bytes:
        payload = {"type": "content_block_delta", "index": self.block_index, "delta": delta}
        return sse_event("content_block_delta", payload)

    def chunk(self, choice: JSON) -> bytes:
        if choice.get("index", 0) != 0:
            return b""
        out = b""
        delta = choice.get("delta") or {}
        if delta.get("reasoning"):
            if self.block_kind != "thinking":
                out += self._open_block(
                    "thinking", {"type": "thinking", "thinking": "", "signature": ""}
                )
            out += self._delta({"type": "thinking_delta", "thinking": delta["reasoning"]})
        for detail in delta.get("reasoning_details") or []:
            if detail.get("type") == "reasoning.encrypted":
                out += self._open_block("redacted_thinking", thinking_block(detail))
            elif detail.get("signature"):
                if self.block_kind != "thinking":
                    out += self._open_block(
                        "thinking", {"type": "thinking", "thinking": "", "signature": ""}
                    )
                out += self._delta({"type": "signature_delta", "signature": detail["signature"]})
        if delta.get("content"):
            if self.block_kind != "text":
                out += self._open_block("text", {"type": "text", "text": ""})
            out += self._delta({"type": "text_delta", "text": delta["content"]})
        for call in delta.get("tool_calls") or []:
            position = call.get("index", 0)
            function = call.get("function") or {}
            if position not in self.tool_blocks:
                block = {
                    "type": "tool_use",
                    "id": call.get("id", ""),
                    "name": function.get("name", ""),
                    "input": {},
                }
                out += self._open_block("tool_use", block)
                self.tool_blocks[position] = self.block_index
            if function.get("arguments"):
                out += self._delta(
                    {"type": "input_json_delta", "partial_json": function["arguments"]}
                )
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
            self.stop_sequence = choice.get("stop_sequence")
        return out

    def finish(self, usage: Usage, cost: float) -> bytes:
        delta = {
            "type": "message_delta",
            "delta": stop_fields(self.finish_reason, self.stop_sequence),
            "usage": anthropic_usage(usage) | {"cost": cost},
        }
        return (
            self._close_block()
            + sse_event("message_delta", delta)
            + sse_event("message_stop", {"type": "message_stop"})
        )

    @staticmethod
    def error(type_: str, message: str) -> bytes:
        return sse_event("error", {"type": "error", "error": {"type": type_, "message": message}})
