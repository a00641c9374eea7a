"""Google Gemini ``generateContent`` / ``streamGenerateContent?alt=sse``.

Quirks handled here: the assistant role is ``model``; system prompts go to
``systemInstruction``; a tool result (``functionResponse``) must name its function, which OpenAI
messages only carry on the earlier assistant turn; ``promptTokenCount`` includes cached tokens
while thinking tokens (``thoughtsTokenCount``) are reported apart from ``candidatesTokenCount``
and are added to completion tokens here; usage in a stream is cumulative per chunk.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

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
    content_parts,
    data_url_split,
    json_loads_lenient,
    media_type_guess,
    reported_tokens,
    text_of,
    tool_failed,
)
from routing.providers.gemini_schema import schema_for_gemini
from routing.providers.reasoning import thinking_budget
from routing.providers.refusals import assistant_parts
from routing.providers.tool_media import tool_media_lifted

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "stop",
    "MALFORMED_FUNCTION_CALL": "stop",
    "OTHER": "stop",
}


def _parts(content: Any) -> list[JSON]:
    parts: list[JSON] = []
    for part in content_parts(content):
        if part.get("type") == "text" and part.get("text"):
            parts.append({"text": part["text"]})
        elif part.get("type") == "image_url":
            image = part.get("image_url") or {}
            url = image.get("url", "") if isinstance(image, dict) else str(image)
            inline = data_url_split(url)
            if inline is not None:
                parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
            else:
                parts.append({"fileData": {"mimeType": media_type_guess(url), "fileUri": url}})
        elif part.get("type") == "file":
            file = part.get("file") or {}
            mime, data = data_url_split(str(file.get("file_data", ""))) or ("application/pdf", "")
            parts.append({"inlineData": {"mimeType": mime, "data": data}})
        elif part.get("type") == "input_audio":
            audio = part.get("input_audio") or {}
            mime = f"audio/{audio.get('format', 'wav')}"
            parts.append({"inlineData": {"mimeType": mime, "data": audio.get("data", "")}})
    return parts


def _function_response(message: JSON, failed: bool) -> JSON:
    """A tool message → a ``functionResponse``'s response: the result's JSON object, else its
    text as ``content``; a failed tool's (``Target.failed_tools``) under ``error``, the key Gemini
    reads as "the call failed, here is why" (``output`` and ``error`` are its named keys)."""
    text = text_of(message.get("content"))
    result = json_loads_lenient(text)
    parsed = isinstance(result, dict) and "_unparsed_arguments" not in result
    if failed:
        return {"error": result if parsed else text}
    return result if parsed else {"content": text}


def messages_to_gemini(
    messages: list[JSON], failed_tools: frozenset[str] = frozenset()
) -> tuple[str, list[JSON]]:
    """OpenAI messages → (system text, Gemini contents with same-role turns merged).
    ``failed_tools``: ``Target.failed_tools``."""
    system: list[str] = []
    contents: list[JSON] = []
    tool_names: dict[str, str] = {}
    # A tool's media goes in the user turn after its functionResponse (an object, no parts).
    for message in tool_media_lifted(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(text_of(message.get("content")))
            continue
        if role == "assistant":
            parts = _parts(assistant_parts(message))  # a replayed refusal: the turn's text
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                tool_names[call.get("id", "")] = function.get("name", "")
                parts.append(
                    {
                        "functionCall": {
                            "name": function.get("name", ""),
                            "args": json_loads_lenient(function.get("arguments") or ""),
                        }
                    }
                )
            gemini_role = "model"
        elif role == "tool":
            result = _function_response(message, tool_failed(message, failed_tools))
            name = tool_names.get(message.get("tool_call_id", ""), message.get("name", "tool"))
            parts = [{"functionResponse": {"name": name, "response": result}}]
            gemini_role = "user"
        else:
            parts = _parts(message.get("content"))
            gemini_role = "user"
        if not parts:
            continue
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    return "\n\n".join(s for s in system if s), contents


def _tool_config(choice: Any) -> JSON | None:
    if choice == "auto":
        return {"functionCallingConfig": {"mode": "AUTO"}}
    if choice == "required":
        return {"functionCallingConfig": {"mode": "ANY"}}
    if choice == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name", "")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return None


def _generation_config(request: JSON, target: Target) -> JSON:
    config: JSON = {"maxOutputTokens": target.max_tokens}
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("n", "candidateCount"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if request.get(ours) is not None:
            config[theirs] = request[ours]
    stop = request.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    budget = thinking_budget(request, target.max_tokens)  # OpenRouter's reasoning object
    if budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
    response_format = request.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if response_format["type"] == "json_schema" and schema:
            config["responseJsonSchema"] = schema_for_gemini(schema)
    return config


def usage_from_gemini(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    usage = Usage()
    thoughts = reported_tokens(data, "thoughtsTokenCount", usage)
    usage.prompt_tokens = reported_tokens(data, "promptTokenCount", usage) + reported_tokens(
        data, "toolUsePromptTokenCount", usage
    )
    usage.completion_tokens = reported_tokens(data, "candidatesTokenCount", usage) + thoughts
    usage.cached_tokens = reported_tokens(data, "cachedContentTokenCount", usage)
    usage.reasoning_tokens = thoughts
    return usage


def _candidate_delta(candidate: JSON, call_offset: int = 0) -> tuple[JSON, list[JSON]]:
    """A candidate's parts → (message fields, tool calls)."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[JSON] = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if "functionCall" in part:
            call = part["functionCall"]
            calls.append(
                {
                    "index": call_offset + len(calls),
                    # Gemini may send no id: a made-up one is unique, as OpenAI's are (an fc_
                    # item reference finds its stored response by it).
                    "id": call.get("id") or f"call_{secrets.token_hex(12)}",
                    "type": "function",
                    "function": {
                        "name": call.get("name", ""),
                        "arguments": orjson.dumps(call.get("args") or {}).decode(),
                    },
                }
            )
        elif part.get("thought"):
            reasoning.append(part.get("text", ""))
        elif "text" in part:
            text.append(part["text"])
    fields: JSON = {}
    if text:
        fields["content"] = "".join(text)
    if reasoning:
        fields["reasoning"] = "".join(reasoning)
    return fields, calls


def _finish(candidate: JSON, has_calls: bool) -> str | None:
    reason = candidate.get("finishReason")
    if reason is None or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    finish = FINISH_REASONS.get(reason, "stop")
    return "tool_calls" if has_calls and finish == "stop" else finish


def _blocked(body: JSON) -> None:
    feedback = body.get("promptFeedback") or {}
    if feedback.get("blockReason") and not body.get("candidates"):
        raise UpstreamError(
            f"The provider blocked the prompt ({feedback['blockReason']}).", status=400
        )


class GeminiAdapter(ProviderAdapter):
    style = "gemini"
    content_kinds = frozenset({"image_url", "file", "input_audio"})
    supported_parameters = COMMON_PARAMETERS | {
        "seed",
        "n",
        "top_k",
        "presence_penalty",
        "frequency_penalty",
    }

    def build_request(self, request: JSON, target: Target, *, stream: bool) -> UpstreamRequest:
        system, contents = messages_to_gemini(request["messages"], target.failed_tools)
        body: JSON = {"contents": contents, "generationConfig": _generation_config(request, target)}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        declarations = [
            {
                "name": tool["function"]["name"],
                "description": tool["function"].get("description", ""),
                **(
                    {"parametersJsonSchema": schema_for_gemini(tool["function"]["parameters"])}
                    if tool["function"].get("parameters")
                    else {}
                ),
            }
            for tool in request.get("tools") or []
            if tool.get("type", "function") == "function" and tool.get("function")
        ]
        if declarations:
            body["tools"] = [{"functionDeclarations": declarations}]
            tool_config = _tool_config(request.get("tool_choice"))
            if tool_config:
                body["toolConfig"] = tool_config
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        url = f"{target.base_url.rstrip('/')}/models/{target.upstream_model}:{method}"
        headers = {"content-type": "application/json"}
        if target.api_key:
            headers["x-goog-api-key"] = target.api_key
        return UpstreamRequest(url=url, headers=headers, body=body)

    def parse_response(self, body: JSON, request: UpstreamRequest) -> Completion:
        _blocked(body)
        choices = []
        for position, candidate in enumerate(body.get("candidates") or []):
            fields, calls = _candidate_delta(candidate)
            message: JSON = {"role": "assistant", "content": fields.get("content")}
            if calls:
                message["tool_calls"] = [
                    {k: v for k, v in c.items() if k != "index"} for c in calls
                ]
            elif message["content"] is None:
                message["content"] = ""
            if "reasoning" in fields:
                message["reasoning"] = fields["reasoning"]
            index = candidate.get("index", position)
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "finish_reason": _finish(candidate, bool(calls)) or "stop",
                    "native_finish_reason": candidate.get("finishReason"),
                }
            )
        if not choices:
            raise UpstreamError("The provider returned no candidates.")
        return Completion(
            choices=choices,
            usage=usage_from_gemini(body.get("usageMetadata")),
            upstream_id=body.get("responseId", ""),
        )

    def stream_decoder(self, request: UpstreamRequest) -> StreamDecoder:
        return GeminiStreamDecoder(request)


class GeminiStreamDecoder(StreamDecoder):
    def __init__(self, request: UpstreamRequest) -> None:
        super().__init__(request)
        self.calls_seen: dict[int, int] = {}  # per candidate: its tool calls' indices
        self.started = False

    def feed(self, event: str | None, data: str) -> list[JSON]:
        if not data:
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError("The provider sent a malformed stream chunk.") from None
        if not isinstance(chunk, dict):
            raise UpstreamError("The provider sent a malformed stream chunk.")
        if chunk.get("error"):
            raise UpstreamError(str((chunk["error"] or {}).get("message", "provider stream error")))
        _blocked(chunk)
        usage = usage_from_gemini(chunk.get("usageMetadata"))
        if usage is not None:
            self.usage = usage
        out: list[JSON] = []
        for candidate in chunk.get("candidates") or []:
            index = candidate.get("index", 0)
            seen = self.calls_seen.get(index, 0)
            fields, calls = _candidate_delta(candidate, seen)
            self.calls_seen[index] = seen + len(calls)
            delta: JSON = dict(fields)
            if not self.started:
                delta = {"role": "assistant", **delta}
                self.started = True
            if calls:
                delta["tool_calls"] = calls
            finish = _finish(candidate, self.calls_seen[index] > 0)
            if finish is not None:
                self.finished = True
            choice = {"index": index, "delta": delta, "finish_reason": finish}
            if finish is not None:
                choice["native_finish_reason"] = candidate.get("finishReason")
            out.append(choice)
        # Each chunk carries a running count: the final one comes with, or after, the finish.
        self.usage_final = self.usage_final or (usage is not None and self.finished)
        return out
