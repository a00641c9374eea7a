"""The fake upstream's ASGI app: routing, fault injection, streaming and the request record.

``GET /_requests`` returns every request received (secrets masked) with what happened to it
(``chunks_sent`` and their ``bytes_sent``, ``completed``, ``disconnected``, ``stalled``: a
``hang_after`` stream has sent all it will and waits for its caller to leave, and ``fault``: what
a ``fail_rate`` drew, "" for none); ``GET /_requests?after=N`` only those after the first N;
``DELETE /_requests`` clears the record and the prompt cache (``prompt_cache``: Anthropic's, kept
for ``cache_control`` marks).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import orjson

from routing.fake_upstream import (
    anthropic_wire,
    embeddings,
    gemini,
    openai_extras,
    openai_shapes,
    wire,
)
from routing.fake_upstream.answers import Answer
from routing.fake_upstream.anthropic_refusals import anthropic_refusal, stopped_as_refusal
from routing.fake_upstream.faults import Fault, fault_draw, model_and_fault
from routing.fake_upstream.prompt_cache import PromptCache, marks_refusal

JSON = dict[str, Any]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_SECRET_HEADERS = {"authorization", "x-api-key", "x-goog-api-key", "api-key"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
}


def _mask(name: str, value: str) -> str:
    return f"***{value[-4:]}" if name in _SECRET_HEADERS else value


class FakeUpstream:
    """One fake provider server; its ``requests`` list is the record tests assert on."""

    def __init__(self, latency_ms: int = 0) -> None:
        self.latency_ms = latency_ms
        self.requests: list[JSON] = []
        self.prompt_cache = PromptCache()  # Anthropic's, honouring cache_control marks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        if path == "/_requests":
            if method == "DELETE":
                self.requests.clear()
                self.prompt_cache = PromptCache()
            after = parse_qs(scope.get("query_string", b"").decode()).get("after", ["0"])[0]
            await _send_json(send, 200, {"requests": self.requests[int(after) :]})
            return
        if path == "/healthz":
            await _send_json(send, 200, {"ok": True})
            return
        await self._serve(scope, body, receive, send)

    async def _serve(self, scope: Scope, raw: bytes, receive: Receive, send: Send) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode()
        record = _new_record(scope, headers, query)
        self.requests.append(record)
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            record["body"] = raw.decode(errors="replace")
            await _send_json(
                send,
                400,
                {"error": {"message": "invalid JSON body", "type": "invalid_request_error"}},
            )
            return
        record["body"] = body
        route = _route(scope["method"], scope["path"], query, body)
        if route is None:
            await _send_json(
                send, 404, {"error": {"message": f"no route {scope['path']}", "type": "not_found"}}
            )
            return
        style, raw_model, stream = route
        refusal = anthropic_refusal(body) or marks_refusal(body) if style == "anthropic" else None
        if refusal is not None:
            error = {"type": "invalid_request_error", "message": refusal}
            await _send_json(send, 400, {"type": "error", "error": error})
            return
        refusal = openai_extras.openai_refusal(body) if style == "openai" else None
        if refusal is not None:
            error = {"message": refusal, "type": "invalid_request_error", "param": "messages"}
            await _send_json(send, 400, {"error": error | {"code": None}})
            return
        unknown = gemini.gemini_schema_refusal(body) if style == "gemini" else None
        if unknown is not None:
            refused = {"code": 400, "message": unknown, "status": "INVALID_ARGUMENT"}
            await _send_json(send, 400, {"error": refused})
            return
        model, fault = model_and_fault(raw_model, headers.get("x-fake-fault"))
        fault, drawn = fault_draw(fault, raw, raw_model)
        record.update(style=style, model=model, stream=stream, fault=drawn)
        if not await self._wait_out(fault, receive):
            record["disconnected"] = True  # the caller gave up: nobody to answer
            return
        if fault.status:
            record["completed"] = True
            echoed = _echo(headers, raw) if fault.echo else ""
            await _send_error(send, style, fault.status, echoed)
            return
        response, events = _answer(style, model, body, fault, stream, self.prompt_cache)
        if not stream:
            await _send_whole(response, fault, send)
            record["completed"] = True
            return
        await self._stream(record, events, fault, receive, send)

    async def _wait_out(self, fault: Fault, receive: Receive) -> bool:
        """The configured latency, then the fault's stalls; False when the caller hung up."""
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        stalls = [3600.0] if fault.timeout else []
        stalls += [fault.delay_ms / 1000] if fault.delay_ms else []
        for seconds in stalls:
            if await _sleep_unless_disconnected(receive, seconds):
                return False
        return True

    async def _stream(
        self, record: JSON, events: Iterator[bytes], fault: Fault, receive: Receive, send: Send
    ) -> None:
        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            record["disconnected"] = True

        watcher = asyncio.create_task(watch())
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            if fault.first_event_delay_ms:  # the head is out: the first content comes late
                await asyncio.wait([watcher], timeout=fault.first_event_delay_ms / 1000)
            for event in events:
                if record["disconnected"]:
                    return
                if (
                    fault.disconnect_after is not None
                    and record["chunks_sent"] >= fault.disconnect_after
                ):
                    # Abort the connection mid-stream, as a crashing provider would.
                    raise ConnectionAbortedError("fake upstream: injected disconnect")
                if fault.end_after is not None and record["chunks_sent"] >= fault.end_after:
                    break  # end the response cleanly, without the rest or the terminator
                if fault.hang_after is not None and record["chunks_sent"] >= fault.hang_after:
                    # Each event sent has been written to the socket: a test waits on this, not
                    # on a stall of some length, when nothing of the stream reaches its client.
                    record["stalled"] = True
                    await watcher
                    return
                if fault.malformed and record["chunks_sent"] == 2:
                    event = b"data: {not json\n\n"
                await send({"type": "http.response.body", "body": event, "more_body": True})
                record["chunks_sent"] += 1
                record["bytes_sent"] += len(event)
                if fault.chunk_delay_ms:
                    await asyncio.sleep(fault.chunk_delay_ms / 1000)
                else:
                    await asyncio.sleep(0)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            record["completed"] = True
        finally:
            watcher.cancel()


def _new_record(scope: Scope, headers: dict[str, str], query: str) -> JSON:
    """What the fake remembers of a request (tests read it back), before its body is read."""
    return {
        "method": scope["method"],
        "path": scope["path"],
        "query": query,
        "headers": {k: _mask(k, v) for k, v in headers.items()},
        "chunks_sent": 0,
        "bytes_sent": 0,
        "completed": False,
        "disconnected": False,
        "stalled": False,
        "received_at": time.time(),
    }


async def _send_whole(response: JSON, fault: Fault, send: Send) -> None:
    """A non-streamed answer, cut, halved or malformed when the fault says so."""
    if fault.disconnect_after is not None:
        await _send_cut(send, orjson.dumps(response))
    if fault.end_after is not None:
        payload = orjson.dumps(response)
        await _send_raw(send, 200, payload[: len(payload) // 2], "application/json")
        return
    if fault.malformed:
        await _send_raw(send, 200, b'{"choices": [', "application/json")
    else:
        await _send_json(send, 200, response)


async def _sleep_unless_disconnected(receive: Receive, seconds: float) -> bool:
    """Stall like a slow provider, but stop when the caller gives up (no orphaned sleepers);
    returns whether it gave up."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(disconnected(), seconds)
        return True
    return False


async def _send_cut(send: Send, body: bytes) -> None:
    """Announce the whole body, send half of it, then drop the connection (a crashed provider)."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    raise ConnectionAbortedError("fake upstream: injected disconnect")


def _route(method: str, path: str, query: str, body: JSON) -> tuple[str, str, bool] | None:
    if method != "POST":
        return None
    if path == "/v1/chat/completions":
        return "openai", str(body.get("model", "")), bool(body.get("stream"))
    if path == "/v1/messages":
        return "anthropic", str(body.get("model", "")), bool(body.get("stream"))
    if path == "/v1/embeddings":
        return "openai-embeddings", str(body.get("model", "")), False
    if path.startswith("/v1beta/models/") and ":" in path:
        model, _, method_name = path.removeprefix("/v1beta/models/").rpartition(":")
        if method_name in ("generateContent", "streamGenerateContent"):
            return "gemini", model, method_name == "streamGenerateContent"
        if method_name == "batchEmbedContents":
            return "gemini-embeddings", model, False
    return None


def _answer(
    style: str, model: str, body: JSON, fault: Fault, stream: bool, cache: PromptCache
) -> tuple[JSON, Iterator[bytes]]:
    if style == "openai-embeddings":
        return embeddings.openai_embeddings(body, model, fault.reported), iter(())
    if style == "gemini-embeddings":
        return embeddings.gemini_embeddings(body, model), iter(())
    cached = fault.cached_tokens
    reading = {
        "openai": wire.openai_turn,
        "anthropic": anthropic_wire.anthropic_turn,
        "gemini": gemini.gemini_turn,
    }
    turn = reading[style](body, model)
    if fault.tokenizer == "bytes":
        turn.prompt_tokens = wire.byte_prompt_tokens(turn)
    turn.reported = fault.reported
    answer = Answer() if fault.empty else turn.answer()
    if fault.reply:
        answer = Answer(text=" ".join([fault.reply] * fault.repeat))
    if style == "openai":
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        whole = wire.openai_response(turn, answer, cached, limit)
        events = wire.openai_stream(turn, answer, cached, limit, include_usage)
        events = openai_shapes.stream_shaped(events, fault.shape)
        served = body | {"service_tier": fault.tier} if fault.tier else body
        whole = openai_extras.openai_whole(whole, served)
        if fault.shape:
            whole = openai_shapes.whole_shaped(whole, fault.shape)
        return whole, openai_extras.openai_stream(events, served, fault.tier_in)
    if style == "anthropic":
        use = cache.use(body, model)
        cached = max(cached, use.read)
        turn.cache_writes = (use.write_5m, use.write_1h)
        limit = body.get("max_tokens")
        events = anthropic_wire.anthropic_stream(turn, answer, cached, limit)
        if not fault.delta_usage:
            events = _without_delta_usage(events)
        whole = anthropic_wire.anthropic_response(turn, answer, cached, limit)
        return stopped_as_refusal(whole, events) if fault.shape == "refusal" else (whole, events)
    limit = (body.get("generationConfig") or {}).get("maxOutputTokens")
    return gemini.gemini_response(turn, answer, cached, limit), gemini.gemini_stream(
        turn, answer, cached, limit
    )


def _without_delta_usage(events: Iterator[bytes]) -> Iterator[bytes]:
    """An Anthropic stream whose message_delta has no usage (``delta_usage=none``)."""
    for event in events:
        if event.startswith(b"event: message_delta\n"):
            head, _, data = event.partition(b"\ndata: ")
            payload = orjson.loads(data)
            payload.pop("usage", None)
            event = head + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
        yield event


async def _send_raw(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, data: Any) -> None:
    await _send_raw(send, status, orjson.dumps(data), "application/json")


def _echo(headers: dict[str, str], raw: bytes) -> str:
    credential = next((v for k, v in headers.items() if k in _SECRET_HEADERS), "")
    credential = credential.removeprefix("Bearer ")
    return f"; incorrect API key provided: {credential}; request: {raw[:2000].decode(errors='replace')}"


async def _send_error(send: Send, style: str, status: int, echoed: str = "") -> None:
    message = f"fake upstream: injected status {status}{echoed}"
    kind = _ERROR_TYPES.get(status, "api_error")
    if style == "anthropic":
        body: Any = {"type": "error", "error": {"type": kind, "message": message}}
    elif style.startswith("gemini"):
        body = {
            "error": {
                "code": status,
                "message": message,
                "status": "UNAVAILABLE" if status >= 500 else "INVALID_ARGUMENT",
            }
        }
    else:
        body = {"error": {"message": message, "type": kind, "code": None}}
    extra = [(b"retry-after", b"1")] if status == 429 else []
    await _send_raw(send, status, orjson.dumps(body), "application/json", extra)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
