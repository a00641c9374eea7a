"""``POST /v1/responses``, OpenAI's Responses API, served as a chat request.

The request's ``input`` items, ``instructions``, flat function tools and ``text.format`` become
a chat request, which takes chat's whole path (``routing.gateway.chat``: plan, hold, fallbacks,
billing), as ``/v1/completions`` does; its answers — whole or streamed — are rewritten on their
way out into the ``response`` shape and the Responses event stream. Nothing is stored
(``store: false`` semantics): ``previous_response_id`` and conversations are refused with a 400,
and so are OpenAI's hosted tools (web search, file search, computer use, ...).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from routerhub.errors import BadRequest
from routing.gateway.chat import _authenticate, _serve
from routing.gateway.http import GatewayRequest, Message, Send
from routing.providers.base import GATEWAY_PARAMETERS, JSON, text_of

# Request fields that need state this gateway does not keep: refused rather than ignored.
_STATEFUL = {
    "previous_response_id": "previous_response_id is not supported yet: responses are not "
    "stored; send the whole conversation in input.",
    "conversation": "conversation is not supported yet: responses are not stored; send the "
    "whole conversation in input.",
    "background": "background responses are not supported: responses are not stored.",
    "prompt": "prompt templates are not supported; send instructions and input.",
}
# Fields answered as OpenAI answers them without changing the chat request (``store`` is
# accepted and nothing is stored either way).
_IGNORED = ("store", "include", "truncation", "metadata", "service_tier", "safety_identifier",
            "prompt_cache_key", "prompt_cache_retention", "max_tool_calls", "stream_options")  # fmt: skip
_COPIED = ("model", "temperature", "top_p", "parallel_tool_calls", "user", "stream",
           "top_logprobs", *GATEWAY_PARAMETERS - {"messages", "usage"})  # fmt: skip
_KNOWN = {"input", "instructions", "tools", "tool_choice", "text", "max_output_tokens",
          "reasoning", *_STATEFUL, *_IGNORED, *_COPIED}  # fmt: skip
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def chat_body_from_response(body: JSON) -> JSON:
    """The chat request for a Responses request, or a 400 naming the field."""
    for name, message in _STATEFUL.items():
        if body.get(name) not in (None, False):
            raise BadRequest(message, param=name)
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise BadRequest(f"Unknown parameter '{unknown[0]}' for /v1/responses.", param=unknown[0])
    chat: JSON = {name: body[name] for name in _COPIED if name in body}
    messages: list[JSON] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise BadRequest("instructions must be a string.", param="instructions")
        messages.append({"role": "system", "content": instructions})
    messages += _messages_from_input(body.get("input"))
    chat["messages"] = messages
    if body.get("tools") is not None:
        chat["tools"] = _chat_tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _chat_tool_choice(body["tool_choice"])
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
        if (
            not isinstance(chat["max_tokens"], int)
            or isinstance(chat["max_tokens"], bool)
            or chat["max_tokens"] < 1
        ):
            raise BadRequest("max_output_tokens must be a positive integer.", param="max_output_tokens")  # fmt: skip
    chat |= _chat_format(body.get("text"))
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise BadRequest("reasoning must be an object.", param="reasoning")
        if reasoning.get("effort") is not None:
            if not isinstance(reasoning["effort"], str):
                raise BadRequest("reasoning.effort must be a string.", param="reasoning")
            chat["reasoning_effort"] = reasoning["effort"]
    if chat.get("stream") is True:
        chat["stream_options"] = {"include_usage": True}  # response.completed carries usage
    return chat


def _messages_from_input(input_: object) -> list[JSON]:
    if isinstance(input_, str):
        return [{"role": "user", "content": input_}]
    if not isinstance(input_, list) or not input_:
        raise BadRequest("input is required: a string or a non-empty list of items.", param="input")  # fmt: skip
    messages: list[JSON] = []
    for index, item in enumerate(input_):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object.", param="input")
        kind = item.get("type", "message")
        if kind == "message":
            role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
            if role is None:
                raise BadRequest(f"{where}.role must be user, assistant, system or developer.",
                                 param="input")  # fmt: skip
            messages.append({"role": role, "content": _chat_content(item.get("content"), where)})
        elif kind == "function_call":
            call = {"id": _string(item, "call_id", where), "type": "function",
                    "function": {"name": _string(item, "name", where),
                                 "arguments": _string(item, "arguments", where)}}  # fmt: skip
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls: one assistant turn
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            content = output if isinstance(output, str) else _text_of_parts(output, where)
            messages.append({"role": "tool", "tool_call_id": _string(item, "call_id", where),
                             "content": content})  # fmt: skip
        elif kind == "reasoning":
            continue  # a previous turn's reasoning: providers take it back only as they sent it
        else:
            raise BadRequest(f"{where}.type '{kind}' is not supported; use message, "
                             "function_call or function_call_output.", param="input")  # fmt: skip
    return messages


def _string(item: JSON, name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"{where}.{name} must be a string.", param="input")
    return value


def _chat_content(content: object, where: str) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of parts.", param="input")
    parts: list[JSON] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text") and isinstance(part.get("text"), str):  # type: ignore[union-attr]
            parts.append({"type": "text", "text": part["text"]})  # type: ignore[index]
        elif kind == "input_image" and isinstance(part.get("image_url"), str):  # type: ignore[union-attr]
            image = {"url": part["image_url"], "detail": part.get("detail") or "auto"}  # type: ignore[index,union-attr]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise BadRequest(f"{where}.content[{index}] must be an input_text or output_text part "
                             "with text, or an input_image part with image_url.", param="input")  # fmt: skip
    return parts


def _text_of_parts(output: object, where: str) -> str:
    parts = _chat_content(output, where)
    return "".join(p["text"] for p in parts if p["type"] == "text")


def _chat_tools(tools: object) -> list[JSON]:
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list of objects.", param="tools")
    out = []
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise BadRequest(f"tools[{index}]: tool type '{kind}' is not supported on this "
                             "gateway; only function tools are.", param="tools")  # fmt: skip
        function = {
            k: tool[k]
            for k in ("name", "description", "parameters", "strict")
            if tool.get(k) is not None
        }  # type: ignore[union-attr]
        out.append({"type": "function", "function": function})
    return out


def _chat_tool_choice(choice: object) -> object:
    if choice in ("auto", "none", "required"):
        return choice
    if (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("name"), str)
    ):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise BadRequest("tool_choice must be 'auto', 'none', 'required' or "
                     '{"type": "function", "name": ...}.', param="tool_choice")  # fmt: skip


def _chat_format(text: object) -> JSON:
    if text is None:
        return {}
    fmt = text.get("format") if isinstance(text, dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if not isinstance(text, dict) or (
        fmt is not None and kind not in ("text", "json_object", "json_schema")
    ):
        raise BadRequest("text.format must be {type: text}, {type: json_object} or "
                         "{type: json_schema, name, schema}.", param="text")  # fmt: skip
    if kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    if kind == "json_schema":
        assert isinstance(fmt, dict)
        if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
            raise BadRequest("text.format json_schema needs name (a string) and schema (an object).", param="text")  # fmt: skip
        schema = {
            k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None
        }
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    return {}


async def responses(req: GatewayRequest) -> None:
    key = await _authenticate(req, anthropic=False)
    body = await req.json()
    chat = chat_body_from_response(body)
    rewrite: Callable[[Send], Send] = lambda send: _ResponsesSend(send, body)  # noqa: E731
    await _serve(req.relayed(rewrite), key, chat, anthropic=False)


# --- answers ---------------------------------------------------------------------------------------


def _echo(request: JSON) -> JSON:
    """The request's settings a response object repeats (the SDK's types require some)."""
    return {
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
        "store": False,
        "previous_response_id": None,
        "error": None,
        "incomplete_details": None,
    }


def _response_usage(usage: JSON) -> JSON:
    extra = {k: usage[k] for k in ("cost", "is_byok") if k in usage}
    return {
        "input_tokens": usage.get("prompt_tokens", 0),
        "input_tokens_details": {"cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)},
        "output_tokens": usage.get("completion_tokens", 0),
        "output_tokens_details": {"reasoning_tokens": (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)},
        "total_tokens": usage.get("total_tokens", 0),
        **extra,
    }  # fmt: skip


def _status(response: JSON, finish_reason: str | None) -> JSON:
    reason = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(
        finish_reason or ""
    )
    if reason is None:
        return response | {"status": "completed"}
    return response | {"status": "incomplete", "incomplete_details": {"reason": reason}}


def _head(chat: JSON, request: JSON) -> JSON:
    head = {"id": f"resp_{chat['id']}", "object": "response",
            "created_at": chat.get("created") or int(time.time()), "model": chat.get("model", ""),
            **_echo(request)}  # fmt: skip
    for name in ("provider", "fallbacks", "routing"):
        if name in chat:
            head[name] = chat[name]
    return head


def _response(chat: JSON, request: JSON) -> JSON:
    """A chat completion as a Responses ``response``: one message and/or function calls."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[JSON] = []
    text = text_of(message.get("content"))
    if text:
        output.append(_message_item(chat["id"], text, "completed"))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append(_call_item(call.get("id", ""), function.get("name", ""),
                                 function.get("arguments") or "", "completed"))  # fmt: skip
    response = _head(chat, request) | {"output": output}
    if chat.get("usage"):
        response["usage"] = _response_usage(chat["usage"])
    return _status(response, choice.get("finish_reason"))


def _message_item(generation_id: str, text: str, status: str) -> JSON:
    return {"type": "message", "id": f"msg_{generation_id}", "role": "assistant", "status": status,
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}  # fmt: skip


def _call_item(call_id: str, name: str, arguments: str, status: str) -> JSON:
    return {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}  # fmt: skip


class _ResponsesSend:
    """An ASGI send that rewrites chat's 200 answers into Responses ones: a JSON body into a
    ``response``, chat chunks into Responses events; errors pass through untouched."""

    def __init__(self, send: Send, request: JSON) -> None:
        self._send = send
        self._request = request
        self._held: Message | None = None
        self._events: _EventWriter | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            content_type = dict(message["headers"]).get(b"content-type", b"")
            if message["status"] != 200:
                await self._send(message)
            elif content_type.startswith(b"text/event-stream"):
                self._events = _EventWriter(self._request)
                await self._send(message)
            else:
                self._held = message
            return
        if self._held is not None:
            body = orjson.dumps(_response(orjson.loads(message["body"]), self._request))
            headers = [(k, v) for k, v in self._held["headers"] if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await self._send(self._held | {"headers": headers})
            self._held = None
            await self._send(message | {"body": body})
            return
        if self._events is not None and message.get("body"):
            message = message | {"body": self._events.rewrite(message["body"])}
        await self._send(message)


class _EventWriter:
    """Chat's chunks, one write at a time, as the Responses event stream: ``response.created``,
    one output item per message or function call (added, deltas, done), ``response.completed``."""

    def __init__(self, request: JSON) -> None:
        self._request = request
        self._sequence = 0
        self._head: JSON | None = None
        self._text: str | None = None  # the message item's text so far, once it is open
        self._text_index = -1
        self._calls: dict[int, tuple[int, JSON]] = {}  # chat's tool call index → output index, item
        self._output: list[JSON] = []
        self._finish: str | None = None
        self._usage: JSON | None = None

    def rewrite(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for event in data.split(b"\n\n"):
            if not event.startswith(b"data: "):
                continue
            payload = event.removeprefix(b"data: ")
            if payload == b"[DONE]":
                out += self._finish_events() if self._head is not None else []
                continue
            chunk = orjson.loads(payload)
            if "error" in chunk:
                error = chunk["error"]
                out.append(self._event("error", {"code": error.get("type"), "message": error.get("message"),
                                                 "param": error.get("param"), "error": error}))  # fmt: skip
                self._head = None  # the stream ends with the error, not a completed response
                continue
            out += self._chunk_events(chunk)
        return b"".join(out)

    def _event(self, kind: str, data: JSON) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **data}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _chunk_events(self, chunk: JSON) -> list[bytes]:
        out: list[bytes] = []
        if self._head is None:
            self._head = _head(chunk, self._request)
            started = self._head | {"status": "in_progress", "output": []}
            out += [self._event("response.created", {"response": started}),
                    self._event("response.in_progress", {"response": started})]  # fmt: skip
        if chunk.get("usage"):
            self._usage = _response_usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            self._finish = choice.get("finish_reason") or self._finish
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out += self._text_delta(chunk["id"], delta["content"])
            for call in delta.get("tool_calls") or []:
                out += self._call_delta(call)
        return out

    def _text_delta(self, generation_id: str, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._text is None:
            self._text, self._text_index = "", len(self._output)
            item = _message_item(generation_id, "", "in_progress") | {"content": []}
            self._output.append(item)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out += [self._event("response.output_item.added", {"output_index": self._text_index, "item": item}),
                    self._event("response.content_part.added", {"item_id": item["id"], "output_index": self._text_index,
                                                                "content_index": 0, "part": part})]  # fmt: skip
        self._text += text
        item_id = self._output[self._text_index]["id"]
        out.append(self._event("response.output_text.delta", {"item_id": item_id, "output_index": self._text_index,
                                                              "content_index": 0, "delta": text, "logprobs": []}))  # fmt: skip
        return out

    def _call_delta(self, call: JSON) -> list[bytes]:
        out: list[bytes] = []
        index = call.get("index", 0)
        function = call.get("function") or {}
        if index not in self._calls:
            item = _call_item(
                call.get("id") or f"call_{index}", function.get("name") or "", "", "in_progress"
            )
            self._calls[index] = (len(self._output), item)
            self._output.append(item)
            out.append(
                self._event(
                    "response.output_item.added",
                    {"output_index": len(self._output) - 1, "item": item},
                )
            )
        output_index, item = self._calls[index]
        if function.get("arguments"):
            item["arguments"] += function["arguments"]
            out.append(self._event("response.function_call_arguments.delta", {"item_id": item["id"], "output_index": output_index,
                                                                              "delta": function["arguments"]}))  # fmt: skip
        return out

    def _finish_events(self) -> list[bytes]:
        out: list[bytes] = []
        status = "incomplete" if self._finish in ("length", "content_filter") else "completed"
        for output_index, item in enumerate(self._output):
            if item["type"] == "message":
                text = self._text or ""
                part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                where = {"item_id": item["id"], "output_index": output_index, "content_index": 0}
                item |= {"status": status, "content": [part]}
                out += [self._event("response.output_text.done", where | {"text": text, "logprobs": []}),
                        self._event("response.content_part.done", where | {"part": part})]  # fmt: skip
            else:
                item["status"] = status
                out.append(self._event("response.function_call_arguments.done", {"item_id": item["id"], "output_index": output_index,
                                                                                 "name": item["name"], "arguments": item["arguments"]}))  # fmt: skip
            out.append(
                self._event(
                    "response.output_item.done", {"output_index": output_index, "item": item}
                )
            )
        assert self._head is not None
        response = _status(self._head | {"output": self._output}, self._finish)
        if self._usage is not None:
            response["usage"] = self._usage
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        out.append(self._event(kind, {"response": response}))
        return out
