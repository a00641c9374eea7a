"""OpenAI-compatible hosts (OpenAI, Groq, Together, Mistral, DeepSeek, vLLM, Ollama…).

The canonical form is this wire format, so translation is mostly a pass-through: forward the
parameters the host accepts, rename the model, set the output bound the gateway reserved for,
and ask for a usage chunk at the end of streams.
"""

from __future__ import annotations

from typing import Any

import orjson

from routing.providers.answer_checks import (
    finish_reason_read,
    images_list,
    message_read,
    parts_read,
)
from routing.providers.base import (
    GATEWAY_PARAMETERS,
    JSON,
    OPENAI_PARAMETERS,
    RETENTION_PARAMETERS,
    STANDARD_SERVICE_TIERS,
    Completion,
    ProviderAdapter,
    StreamDecoder,
    Target,
    UpstreamError,
    UpstreamRequest,
    Usage,
    reported_tokens,
    tool_error_marked,
)
from routing.providers.reasoning import reasoning_effort
from routing.providers.refusals import refusal_as_text
from routing.providers.tool_media import tool_media_lifted


def usage_from_openai(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    prompt_details = data.get("prompt_tokens_details")
    completion_details = data.get("completion_tokens_details")
    prompt_details = prompt_details if isinstance(prompt_details, dict) else {}
    completion_details = completion_details if isinstance(completion_details, dict) else {}
    usage = Usage()
    usage.prompt_tokens = reported_tokens(data, "prompt_tokens", usage)
    usage.completion_tokens = reported_tokens(data, "completion_tokens", usage)
    usage.cached_tokens = reported_tokens(prompt_details, "cached_tokens", usage) or (
        reported_tokens(data, "prompt_cache_hit_tokens", usage)
    )
    usage.reasoning_tokens = reported_tokens(completion_details, "reasoning_tokens", usage)
    return usage


def _tier_served(data: JSON) -> str:
    """The tier an answer (or a stream's usage chunk) says it was served at; "" when unsaid."""
    tier = data.get("service_tier")
    return tier[:32] if isinstance(tier, str) else ""


# OpenRouter's message fields OpenAI's wire has not: signed thinking (Anthropic's alone) and an
# answer's ``images`` sent back (OpenAI takes images from user messages only).
_NOT_OPENAIS = frozenset({"reasoning_details", "images"})


def _wire_message(message: Any, target: Target) -> Any:
    """A message as OpenAI's wire takes it; the very object unless something must change. A
    refusal sent back is chat's only for a host that takes it (``takes_refusals``: OpenAI),
    text for the rest (``refusal_as_text``)."""
    if not isinstance(message, dict):
        return message
    if "reasoning_details" in message or "images" in message:
        message = {k: v for k, v in message.items() if k not in _NOT_OPENAIS}
    if message.get("role") == "assistant" and not target.options.get("takes_refusals"):
        message = refusal_as_text(message)
    return tool_error_marked(message, target.failed_tools)


def _platform_only(body: JSON) -> None:
    """On the platform's keys: nothing the provider would keep (``RETENTION_PARAMETERS``), and
    no tier priced above the catalog (planning refuses one first; this is the last guard)."""
    for name in RETENTION_PARAMETERS:
        body.pop(name, None)
    if body.get("service_tier") not in STANDARD_SERVICE_TIERS:
        body.pop("service_tier", None)


class OpenAICompatAdapter(ProviderAdapter):
    style = "openai"
    supported_parameters = OPENAI_PARAMETERS

    def build_request(self, request: JSON, target: Target, *, stream: bool) -> UpstreamRequest:
        # Signed Anthropic thinking (``reasoning_details``, from /v1/messages history) is
        # Anthropic's alone, and a failed tool result's flag is said in its text: OpenAI
        # refuses unknown message fields. A tool message holds text parts only there: a tool's
        # media goes in a user message after the tool messages (``tool_media``).
        lifted = tool_media_lifted(request["messages"])
        messages = [_wire_message(m, target) for m in lifted]
        body: JSON = {"model": target.upstream_model, "messages": messages}
        for name, value in request.items():
            if name in OPENAI_PARAMETERS and name not in GATEWAY_PARAMETERS:
                body[name] = value
        if not target.own_key:
            _platform_only(body)
        effort = reasoning_effort(request)  # OpenRouter's reasoning object
        if effort is not None and "reasoning_effort" not in body:
            body["reasoning_effort"] = effort
        body.pop("max_tokens", None)
        body.pop("max_completion_tokens", None)
        body[target.options.get("max_tokens_field", "max_tokens")] = target.max_tokens
        body.pop("stream_options", None)
        if stream:
            body["stream"] = True
            if target.options.get("stream_options", True):
                body["stream_options"] = {"include_usage": True}
        else:
            body.pop("stream", None)
        headers = {"content-type": "application/json"}
        if target.api_key:
            headers["authorization"] = f"Bearer {target.api_key}"
        url = f"{target.base_url.rstrip('/')}/chat/completions"
        return UpstreamRequest(url=url, headers=headers, body=body)

    def parse_response(self, body: JSON, request: UpstreamRequest) -> Completion:
        if "error" in body and not body.get("choices"):
            raise UpstreamError(str((body["error"] or {}).get("message", body["error"])))
        choices = []
        for index, choice in enumerate(body.get("choices") or []):
            if not isinstance(choice, dict):
                raise UpstreamError("The provider sent a malformed answer: a choice not an object.")
            finish_reason = finish_reason_read(choice)
            choices.append(
                {
                    "index": choice.get("index", index),
                    "message": message_read(choice.get("message") or {}),
                    "finish_reason": finish_reason,
                    "native_finish_reason": finish_reason,
                    **({"logprobs": choice["logprobs"]} if choice.get("logprobs") else {}),
                }
            )
        if not choices:
            raise UpstreamError("The provider returned no choices.")
        usage = usage_from_openai(body.get("usage"))
        tier = _tier_served(body)
        if usage is not None:
            usage.service_tier = tier
        return Completion(choices, usage, body.get("id", ""), service_tier=tier)

    def stream_decoder(self, request: UpstreamRequest) -> StreamDecoder:
        return OpenAIStreamDecoder(request)


class OpenAIStreamDecoder(StreamDecoder):
    def feed(self, event: str | None, data: str) -> list[JSON]:
        if data == "[DONE]":
            self.finished = True
            self.usage_final = self.usage is not None  # some hosts send a running count per chunk
            return []
        if not data:
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError("The provider sent a malformed stream chunk.") from None
        if not isinstance(chunk, dict):
            raise UpstreamError("The provider sent a malformed stream chunk.")
        if chunk.get("error"):
            error = chunk["error"]
            raise UpstreamError(
                str(error.get("message", error) if isinstance(error, dict) else error)
            )
        self.service_tier = _tier_served(chunk) or self.service_tier
        usage = usage_from_openai(chunk.get("usage"))
        if usage is not None:
            usage.service_tier = self.service_tier
            self.usage = usage
        return [
            {
                "index": choice.get("index", 0),
                "delta": _delta_of({} if choice.get("delta") is None else choice["delta"]),
                "finish_reason": choice.get("finish_reason"),
                **(
                    {"native_finish_reason": choice["finish_reason"]}
                    if choice.get("finish_reason")
                    else {}
                ),
                **({"logprobs": choice["logprobs"]} if choice.get("logprobs") else {}),
            }
            for choice in chunk.get("choices") or []
        ]


def _delta_of(delta: Any) -> Any:
    """A delta whose ``content`` is a list of parts (Mistral's Magistral models) as the canonical
    strings (``answer_checks.parts_read``: text parts its ``content``, thinking parts its
    ``reasoning``, image parts its ``images``), as a whole answer's message is read."""
    if isinstance(delta, dict) and "images" in delta:
        images_list(delta["images"])  # a TypeError: a malformed stream (stream_checks)
    if not isinstance(delta, dict) or not isinstance(delta.get("content"), list):
        return delta
    read = parts_read(delta["content"])
    delta = {name: value for name, value in delta.items() if name != "content"}
    if "images" in read:  # OpenRouter's streamed images field, as a whole answer's
        delta["images"] = [*images_list(delta.get("images")), *read.pop("images")]
    for name, text in read.items():
        delta[name] = (delta.get(name) or "") + text if name != "content" else text
    return delta
