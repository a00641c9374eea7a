"""Anthropic Messages API: canonical (OpenAI) requests out, Messages responses and streams in.

The messages themselves are translated in ``anthropic_messages``. Quirks handled here:
``max_tokens`` is required; temperature tops out at 1; there is no JSON mode, so
``response_format`` is emulated with a forced tool whose input is the JSON answer (LiteLLM does
the same).
"""

from __future__ import annotations

from typing import Any

import orjson

from routing.providers.anthropic_messages import messages_to_anthropic, reasoning_detail
from routing.providers.base import (
    COMMON_PARAMETERS,
    JSON,
    Completion,
    ProviderAdapter,
    StreamDecoder,
    Target,
    UpstreamError,
    UpstreamRequest,
    Usage,
    reported_tokens,
)
from routing.providers.cache_marks import mark_of
from routing.providers.reasoning import reasoning_excluded, thinking_budget

ANTHROPIC_VERSION = "2023-06-01"
JSON_TOOL = "json_response"
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _tool_choice(choice: Any, parallel: Any) -> JSON | None:
    result: JSON | None
    if choice is None:
        result = None
    elif choice == "required":
        result = {"type": "any"}
    elif choice in ("auto", "none"):
        result = {"type": choice}
    elif isinstance(choice, dict):
        result = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    else:
        result = None
    if parallel is False:
        result = (result or {"type": "auto"}) | {"disable_parallel_tool_use": True}
    return result


def _json_tool_schema(response_format: Any) -> JSON | None:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema or {"type": "object"}
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    return None


def _tools(request: JSON) -> list[JSON]:
    return [
        {
            "name": tool["function"]["name"],
            "description": tool["function"].get("description", ""),
            "input_schema": tool["function"].get("parameters")
            or {"type": "object", "properties": {}},
        }
        | ({"cache_control": mark_of(tool)} if mark_of(tool) else {})
        for tool in request.get("tools") or []
        if tool.get("type", "function") == "function" and tool.get("function")
    ]


def matched_stop(message: JSON) -> JSON:
    """The choice's ``stop_sequence``: which of the request's stop sequences ended the answer,
    as Anthropic names it (``stop_sequence`` next to ``stop_reason``); empty otherwise."""
    matched = message.get("stop_sequence")
    return {"stop_sequence": matched} if isinstance(matched, str) else {}


class AnthropicAdapter(ProviderAdapter):
    style = "anthropic"
    content_kinds = frozenset({"image_url", "file"})
    supported_parameters = COMMON_PARAMETERS | {
        "top_k",
        "parallel_tool_calls",
        "metadata",
        "thinking",
        "output_config",
    }

    def build_request(self, request: JSON, target: Target, *, stream: bool) -> UpstreamRequest:
        system, turns = messages_to_anthropic(request["messages"], target.failed_tools)
        body: JSON = {
            "model": target.upstream_model,
            "max_tokens": target.max_tokens,
            "messages": turns,
        }
        if system:
            body["system"] = system
        if request.get("temperature") is not None:
            body["temperature"] = min(float(request["temperature"]), 1.0)
        for ours, theirs in (("top_p", "top_p"), ("top_k", "top_k")):
            if request.get(ours) is not None:
                body[theirs] = request[ours]
        stop = request.get("stop")
        if stop:
            body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if request.get("user"):
            body["metadata"] = {"user_id": str(request["user"])}
        if mark_of(request):  # automatic caching: Anthropic marks the last cacheable block
            body["cache_control"] = mark_of(request)
        tools = _tools(request)
        tool_choice = _tool_choice(request.get("tool_choice"), request.get("parallel_tool_calls"))
        context: JSON = {}
        config = request.get("output_config")
        native = isinstance(config, dict) and config.get("format")  # structured outputs
        schema = None if native else _json_tool_schema(request.get("response_format"))
        if schema is not None:
            tools.append(
                {"name": JSON_TOOL, "description": "Answer with this JSON.", "input_schema": schema}
            )
            tool_choice = {"type": "tool", "name": JSON_TOOL}
            context["json_tool"] = JSON_TOOL
        if tools:
            body["tools"] = tools
        if tool_choice is not None and (tools or tool_choice.get("type") == "none"):
            body["tool_choice"] = tool_choice
        for name in ("thinking", "output_config"):  # Anthropic-only, as /v1/messages gave them
            if isinstance(request.get(name), dict):
                body[name] = request[name]
        budget = thinking_budget(request, target.max_tokens)  # OpenRouter's reasoning object
        if budget is not None and "thinking" not in body:
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
            body.pop("temperature", None)  # Anthropic refuses a temperature with thinking
        if reasoning_excluded(request):
            context["exclude_reasoning"] = True
        if stream:
            body["stream"] = True
        headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if target.api_key:
            headers["x-api-key"] = target.api_key
        url = f"{target.base_url.rstrip('/')}/v1/messages"
        return UpstreamRequest(url=url, headers=headers, body=body, context=context)

    def parse_response(self, body: JSON, request: UpstreamRequest) -> Completion:
        if body.get("type") == "error":
            raise UpstreamError(str((body.get("error") or {}).get("message", "provider error")))
        json_tool = request.context.get("json_tool")
        text: list[str] = []
        reasoning: list[str] = []
        details: list[JSON] = []
        tool_calls: list[JSON] = []
        for block in body.get("content") or []:
            kind = block.get("type")
            if kind == "text":
                text.append(block.get("text", ""))
            elif kind in ("thinking", "redacted_thinking"):
                reasoning.append(block.get("thinking", ""))
                details.append(reasoning_detail(block))
            elif kind == "tool_use" and block.get("name") == json_tool:
                text.append(orjson.dumps(block.get("input") or {}).decode())
            elif kind == "tool_use":
                tool_calls.append(
                    {
                        "id": block.get("id", ""),
                        "type": "function",
                        "function": {
                            "name": block.get("name", ""),
                            "arguments": orjson.dumps(block.get("input") or {}).decode(),
                        },
                    }
                )
        message: JSON = {
            "role": "assistant",
            "content": "".join(text) if text or not tool_calls else None,
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        if any(reasoning):
            message["reasoning"] = "".join(reasoning)
        if details:
            message["reasoning_details"] = details  # signed: sent back on the next turn
        finish = STOP_REASONS.get(body.get("stop_reason") or "end_turn", "stop")
        if json_tool and finish == "tool_calls" and not tool_calls:
            finish = "stop"
        # As the stream decoder counts them: thinking excluded, and redacted thinking's bytes.
        unrelayed = sum(redacted_chars(block) for block in body.get("content") or [])
        if request.context.get("exclude_reasoning"):
            unrelayed += len(message.pop("reasoning", ""))
            for detail in details:  # as a stream sends them: the signature, never the thinking
                detail.pop("text", None)
        native = {"native_finish_reason": body.get("stop_reason")} | matched_stop(body)
        return Completion(
            choices=[{"index": 0, "message": message, "finish_reason": finish} | native],
            usage=usage_from_anthropic(body.get("usage")),
            upstream_id=body.get("id", ""),
            unrelayed_chars=unrelayed,
        )

    def stream_decoder(self, request: UpstreamRequest) -> StreamDecoder:
        return AnthropicStreamDecoder(request)


def redacted_chars(block: JSON) -> int:
    """A ``redacted_thinking`` block's thinking, estimated: billed in full by Anthropic and
    encrypted, so no relayed text counts it; its ciphertext's bytes (base64's ¾) stand for the
    thinking's characters. 0 for any other block."""
    data = block.get("data") if block.get("type") == "redacted_thinking" else None
    return len(data) * 3 // 4 if isinstance(data, str) else 0


def usage_from_anthropic(data: Any, previous: Usage | None = None) -> Usage | None:
    """Anthropic's ``input_tokens`` excludes cache reads and writes; OpenAI's prompt includes them."""
    if not isinstance(data, dict):
        return previous
    usage = previous or Usage()
    if "input_tokens" in data or "cache_read_input_tokens" in data:
        cache_read = reported_tokens(data, "cache_read_input_tokens", usage)
        cache_write = reported_tokens(data, "cache_creation_input_tokens", usage)
        usage.prompt_tokens = (
            reported_tokens(data, "input_tokens", usage) + cache_read + cache_write
        )
        usage.cached_tokens, usage.cache_write_tokens = cache_read, cache_write
        # {ephemeral_5m_input_tokens, ephemeral_1h_…}: only on the final body and on a stream's
        # message_start; a stream's message_delta repeats the running totals without it, so
        # the 1h share read earlier stands (never more than the writes now reported).
        by_ttl = data.get("cache_creation")
        if isinstance(by_ttl, dict):
            hour = reported_tokens(by_ttl, "ephemeral_1h_input_tokens", usage)
        else:
            hour = usage.cache_write_1h_tokens
        usage.cache_write_1h_tokens = min(hour, cache_write)
    if "output_tokens" in data:
        usage.completion_tokens = reported_tokens(data, "output_tokens", usage)
    return usage


class AnthropicStreamDecoder(StreamDecoder):
    def __init__(self, request: UpstreamRequest) -> None:
        super().__init__(request)
        self.json_tool = request.context.get("json_tool")
        self.tool_index: dict[int, int] = {}  # Anthropic block index → OpenAI tool_calls index
        self.json_blocks: set[int] = set()
        self.saw_tool = False
        self.exclude_reasoning = bool(request.context.get("exclude_reasoning"))

    def feed(self, event: str | None, data: str) -> list[JSON]:
        try:
            payload = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            raise UpstreamError("The provider sent a malformed stream event.") from None
        kind = payload.get("type", event)
        if kind == "message_start":
            message = payload.get("message") or {}
            self.usage = usage_from_anthropic(message.get("usage"), self.usage)
            return [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ]
        if kind == "content_block_start":
            return self._block_start(payload.get("index", 0), payload.get("content_block") or {})
        if kind == "content_block_delta":
            delta = payload.get("delta")  # a non-object one is malformed (``chunk_read``)
            return self._block_delta(payload.get("index", 0), {} if delta is None else delta)
        if kind == "message_delta":
            final = payload.get("usage")
            self.usage = usage_from_anthropic(final, self.usage)
            self.usage_final = isinstance(final, dict) and "output_tokens" in final
            delta = payload.get("delta")  # a non-object one is malformed (``chunk_read``)
            delta = {} if delta is None else delta
            reason = delta.get("stop_reason")
            if reason is None:
                return []
            finish = STOP_REASONS.get(reason, "stop")
            if finish == "tool_calls" and not self.saw_tool:
                finish = "stop"
            ending = {"index": 0, "delta": {}, "finish_reason": finish}
            return [ending | {"native_finish_reason": reason} | matched_stop(delta)]
        if kind == "message_stop":
            self.finished = True
        elif kind == "error":
            error = payload.get("error") or {}
            raise UpstreamError(str(error.get("message", "provider stream error")))
        return []

    def _block_start(self, index: int, block: JSON) -> list[JSON]:
        if block.get("type") == "tool_use" and block.get("name") == self.json_tool:
            self.json_blocks.add(index)
            return []
        if block.get("type") == "tool_use":
            self.saw_tool = True
            position = self.tool_index.setdefault(index, len(self.tool_index))
            call = {
                "index": position,
                "id": block.get("id", ""),
                "type": "function",
                "function": {"name": block.get("name", ""), "arguments": ""},
            }
            return [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]
        if block.get("type") == "text" and block.get("text"):
            return [{"index": 0, "delta": {"content": block["text"]}, "finish_reason": None}]
        if block.get("type") == "redacted_thinking":
            self.unrelayed_chars += redacted_chars(block)  # billed if cut before its count
            detail = {"type": "reasoning.encrypted", "data": block.get("data", "")}
            return [{"index": 0, "delta": {"reasoning_details": [detail]}, "finish_reason": None}]
        return []

    def _block_delta(self, index: int, delta: JSON) -> list[JSON]:
        kind = delta.get("type")
        if kind == "text_delta":
            out: JSON = {"content": delta.get("text", "")}
        elif kind == "thinking_delta" and self.exclude_reasoning:
            self.unrelayed_chars += len(delta.get("thinking") or "")
            return []
        elif kind == "thinking_delta":
            out = {"reasoning": delta.get("thinking", "")}
        elif kind == "signature_delta":
            out = {
                "reasoning_details": [
                    {"type": "reasoning.text", "signature": delta.get("signature", "")}
                ]
            }
        elif kind == "input_json_delta" and index in self.json_blocks:
            out = {"content": delta.get("partial_json", "")}
        elif kind == "input_json_delta" and index in self.tool_index:
            call = {
                "index": self.tool_index[index],
                "function": {"arguments": delta.get("partial_json", "")},
            }
            out = {"tool_calls": [call]}
        else:
            return []
        return [{"index": 0, "delta": out, "finish_reason": None}]
