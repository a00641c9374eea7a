"""Chat's answers in the Responses API's shapes: a whole ``response`` object, and the Responses
event stream built from chat's chunks (``routing.gateway.responses`` rewrites with these)."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from routing.providers.base import JSON, text_of

# Anthropic's ``stop_reason: refusal`` (its classifiers stopped the answer) has no words of its
# own: it is chat's ``content_filter``, here ``incomplete`` for ``content_filter`` (OpenAI's own
# signal), with no refusal part made up for it.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_from_chat(chat: JSON, request: JSON) -> JSON:
    """A chat completion as a ``response``: a message and/or function calls, in that order."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[JSON] = []
    text, refusal = text_of(message.get("content")), message.get("refusal")
    if text or refusal:
        item = _message_item(chat["id"], text, "completed")
        if refusal:  # OpenAI's refusal content part, after any text
            part = {"type": "refusal", "refusal": refusal}
            item["content"] = [*item["content"][: 1 if text else 0], part]
        output.append(item)
    for position, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        call_id = call.get("id") or f"call_{chat['id']}_{position}"
        item = _call_item(call_id, function.get("name", ""), "completed")
        output.append(item | {"arguments": function.get("arguments") or ""})
    response = _head(chat, request) | {"output": output}
    if chat.get("usage"):
        response["usage"] = _usage(chat["usage"])
    return _with_status(response, choice.get("finish_reason"))


def _head(chat: JSON, request: JSON) -> JSON:
    """A response's fields apart from its output, status and usage: ids, the model that served
    it (and ``provider``, ``fallbacks``, ``routing``, ``pipeline`` and the ``service_tier``
    served as chat gives them), the request's settings."""
    head: JSON = {
        "id": f"resp_{chat['id']}",
        "object": "response",
        "created_at": chat.get("created") or int(time.time()),
        "model": chat.get("model", ""),
        # The request's settings, which a response repeats (the SDK's types require some).
        "instructions": request.get("instructions"),
        "tools": request.get("tools") or [],
        "tool_choice": request.get("tool_choice") or "auto",
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "temperature": request.get("temperature"),
        "top_p": request.get("top_p"),
        "max_output_tokens": request.get("max_output_tokens"),
        "text": request.get("text") or {"format": {"type": "text"}},
        "reasoning": request.get("reasoning"),
        "metadata": request.get("metadata") or {},
        "store": False,  # until the answer is complete (ResponseStore.finish)
        "previous_response_id": request.get("previous_response_id"),
        "error": None,
        "incomplete_details": None,
    }
    for name in ("provider", "fallbacks", "routing", "pipeline", "service_tier"):
        if name in chat:
            head[name] = chat[name]
    return head


def _usage(usage: JSON) -> JSON:
    details = usage.get("prompt_tokens_details") or {}
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
    return {
        "input_tokens": usage.get("prompt_tokens", 0),
        # cache_write_tokens: RouterHub's (OpenRouter's chat name), beside OpenAI's cached_tokens.
        "input_tokens_details": {
            "cached_tokens": details.get("cached_tokens", 0),
            "cache_write_tokens": details.get("cache_write_tokens", 0),
        },
        "output_tokens": usage.get("completion_tokens", 0),
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": usage.get("total_tokens", 0),
        **{name: usage[name] for name in ("cost", "is_byok") if name in usage},
    }


def _with_status(response: JSON, finish_reason: str | None) -> JSON:
    reason = _INCOMPLETE.get(finish_reason or "")
    if reason is None:
        return response | {"status": "completed"}
    return response | {"status": "incomplete", "incomplete_details": {"reason": reason}}


def _text_part(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _part(kind: str, text: str) -> JSON:
    """A message's content part: ``output_text`` or ``refusal``."""
    return _text_part(text) if kind == "output_text" else {"type": "refusal", "refusal": text}


def _message_item(generation_id: str, text: str, status: str) -> JSON:
    return {
        "type": "message",
        "id": f"msg_{generation_id}",
        "role": "assistant",
        "status": status,
        "content": [_text_part(text)],
    }


def _call_item(call_id: str, name: str, status: str) -> JSON:
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": "",
        "status": status,
    }


class ResponseEventWriter:
    """Chat's SSE writes, one at a time, as the Responses event stream: ``response.created``
    and ``response.in_progress`` at the first chunk, one output item per message or function
    call (added, its deltas), and at chat's ``[DONE]`` every item's done events and
    ``response.completed`` (or ``response.incomplete``). Chat's error event becomes an
    ``error`` event, which the SDK raises."""

    def __init__(self, request: JSON, finish: Callable[[JSON], JSON]) -> None:
        self._request = request
        self._finish = finish  # the completed response as it is sent (ResponseStore.finish)
        self._sequence = 0
        self._head: JSON | None = None  # set by the first chunk; None again after an error
        self._output: list[JSON] = []
        self._message: tuple[int, JSON] | None = None  # output index, item
        self._parts: list[list[str]] = []  # the message's parts so far: [kind, text]
        self._closed = 0  # how many of them have had their done events
        self._calls: dict[int, tuple[int, JSON]] = {}  # chat's tool call index → the same
        self._finish_reason: str | None = None
        self._usage: JSON | None = None

    def rewrite(self, data: bytes) -> bytes:
        # Chat writes whole events, one or more per write (the usage chunk, then [DONE]).
        out: list[bytes] = []
        for event in data.split(b"\n\n"):
            if not event.startswith(b"data: "):
                continue
            payload = event.removeprefix(b"data: ")
            if payload == b"[DONE]":
                out += self._done()
                continue
            chunk = orjson.loads(payload)
            if "error" in chunk:
                out.append(self._error(chunk["error"]))
            else:
                out += self._chunk(chunk)
        return b"".join(out)

    def _event(self, kind: str, data: JSON) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **data}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _error(self, error: JSON) -> bytes:
        self._head = None  # the stream ends with the error, not with a response
        fields = {
            "code": error.get("type"),
            "message": error.get("message"),
            "param": error.get("param"),
            "error": error,
        }
        return self._event("error", fields)

    def _chunk(self, chunk: JSON) -> list[bytes]:
        out: list[bytes] = []
        if self._head is None:
            self._head = _head(chunk, self._request)
            started = {"response": self._head | {"status": "in_progress", "output": []}}
            out += [
                self._event("response.created", started),
                self._event("response.in_progress", started),
            ]
        if chunk.get("usage"):
            self._usage = _usage(chunk["usage"])
        if "service_tier" in chunk:  # the tier served, said once the provider said it
            self._head["service_tier"] = chunk["service_tier"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # Responses has one answer (n is not a Responses parameter)
            self._finish_reason = choice.get("finish_reason") or self._finish_reason
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out += self._part_delta(chunk["id"], "output_text", delta["content"])
            if isinstance(delta.get("refusal"), str) and delta["refusal"]:
                out += self._part_delta(chunk["id"], "refusal", delta["refusal"])
            for call in delta.get("tool_calls") or []:
                out += self._call_delta(chunk["id"], call)
        return out

    def _added(self, item: JSON) -> tuple[int, bytes]:
        self._output.append(item)
        index = len(self._output) - 1
        return index, self._event(
            "response.output_item.added", {"output_index": index, "item": item}
        )

    def _part_delta(self, generation_id: str, kind: str, text: str) -> list[bytes]:
        """``text`` added to the message's last part, or to a new part of ``kind`` (output_text
        or refusal: OpenAI streams a refusal as its own part, ``response.refusal.delta``)."""
        out: list[bytes] = []
        if self._message is None:
            item = _message_item(generation_id, "", "in_progress") | {"content": []}
            index, added = self._added(item)
            self._message = index, item
            out.append(added)
        index, item = self._message
        if not self._parts or self._parts[-1][0] != kind:
            out += self._parts_closed(item)  # the part before ends before this one starts
            self._parts.append([kind, ""])
            where = self._part_where(len(self._parts) - 1)
            out.append(
                self._event("response.content_part.added", where | {"part": _part(kind, "")})
            )
        self._parts[-1][1] += text
        where = self._part_where(len(self._parts) - 1)
        if kind == "refusal":
            out.append(self._event("response.refusal.delta", where | {"delta": text}))
        else:
            delta = where | {"delta": text, "logprobs": []}
            out.append(self._event("response.output_text.delta", delta))
        return out

    def _part_where(self, content_index: int) -> JSON:
        assert self._message is not None
        index, item = self._message
        return {"item_id": item["id"], "output_index": index, "content_index": content_index}

    def _parts_closed(self, item: JSON) -> list[bytes]:
        """The done events (``output_text.done`` or ``refusal.done``, then ``content_part.done``)
        of each part not yet closed, the message's content set to its parts so far: a part is
        closed before the next is added, as OpenAI streams them, and the last at the end."""
        out: list[bytes] = []
        item["content"] = [_part(kind, text) for kind, text in self._parts]
        for content_index in range(self._closed, len(self._parts)):
            kind, text = self._parts[content_index]
            where = self._part_where(content_index)
            if kind == "refusal":
                out.append(self._event("response.refusal.done", where | {"refusal": text}))
            else:
                done = where | {"text": text, "logprobs": []}
                out.append(self._event("response.output_text.done", done))
            part = item["content"][content_index]
            out.append(self._event("response.content_part.done", where | {"part": part}))
        self._closed = len(self._parts)
        return out

    def _call_delta(self, generation_id: str, call: JSON) -> list[bytes]:
        out: list[bytes] = []
        position = call.get("index", 0)
        function = call.get("function") or {}
        if position not in self._calls:
            # A made-up id is unique (an fc_ item reference finds its response by it).
            call_id = call.get("id") or f"call_{generation_id}_{position}"
            item = _call_item(call_id, function.get("name") or "", "in_progress")
            index, added = self._added(item)
            self._calls[position] = index, item
            out.append(added)
        index, item = self._calls[position]
        if function.get("arguments"):
            item["arguments"] += function["arguments"]
            where = {"item_id": item["id"], "output_index": index}
            delta = where | {"delta": function["arguments"]}
            out.append(self._event("response.function_call_arguments.delta", delta))
        return out

    def _done(self) -> list[bytes]:
        if self._head is None:
            return []  # after an error event: nothing completed
        out: list[bytes] = []
        response = _with_status(self._head | {"output": self._output}, self._finish_reason)
        for index, item in enumerate(self._output):
            item["status"] = "completed" if response["status"] == "completed" else "incomplete"
            where = {"item_id": item["id"], "output_index": index}
            if item["type"] == "message":
                out += self._parts_closed(item)
            else:
                done = where | {"name": item["name"], "arguments": item["arguments"]}
                out.append(self._event("response.function_call_arguments.done", done))
            out.append(
                self._event("response.output_item.done", {"output_index": index, "item": item})
            )
        if self._usage is not None:
            response["usage"] = self._usage
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        out.append(self._event(kind, {"response": self._finish(response)}))
        return out
