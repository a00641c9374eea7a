"""A stream from a tenant's own host is read one event at a time, and no event may grow without
end: one event that never ends (``data: xxxx…`` with no blank line) was kept in one buffer that
was copied and searched again from its start at every read — a few KiB of gzip decoding to an
event of 256 MiB (``GATEWAY_MAX_RESPONSE_BYTES``) held the event loop every organization's
requests share for hours (8 MiB in 1 KiB reads took a minute). An event past
``GATEWAY_MAX_SSE_EVENT_BYTES`` fails its attempt; bytes that are not UTF-8 are a malformed
stream, billed and answered as one, never an unhandled error."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest

from billing.models import LedgerEntry, Reservation
from routing.providers.base import UpstreamError, sse_events
from tests.routing.world import World
from tests.security.own_host import own_host_serving, stream_chunk

EVENT_LIMIT = 1024 * 1024
PIECE = 4096  # the host writes its (gzipped) stream in pieces of this size


FIRST = stream_chunk({"role": "assistant", "content": "Hello"}, None)
END = (
    stream_chunk({}, "stop", {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12})
    + b"data: [DONE]\n\n"
)
# One event of 3 MiB (three times the bound) that ends only after it: ~3 KiB of gzip.
ENDLESS = b'data: {"choices": [{"index": 0, "delta": {"content": "' + b"x" * (3 * EVENT_LIMIT)


class StreamingHost:
    """An OpenAI-compatible host streaming ``stream`` gzipped, in ``PIECE``-byte writes."""

    def __init__(self) -> None:
        self.stream = b""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"text/event-stream"), (b"content-encoding", b"gzip")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        packed = gzip.compress(self.stream)
        for start in range(0, len(packed), PIECE):
            piece = packed[start : start + PIECE]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def own_host(world: World, settings: Any) -> Iterator[StreamingHost]:
    settings.GATEWAY_MAX_SSE_EVENT_BYTES = EVENT_LIMIT
    app = StreamingHost()
    with own_host_serving(world, settings, app):
        yield app


def _streamed(
    world: World, path: str = "/v1/chat/completions", headers: dict[str, str] | None = None
) -> tuple[int, list[bytes]]:
    body = {"model": "test/own", "max_tokens": 16, "stream": True,
            "messages": [{"role": "user", "content": "Say hello."}]}  # fmt: skip
    headers = headers or {"Authorization": f"Bearer {world.key}"}
    with httpx.stream("POST", f"{world.gateway_url}{path}", json=body, headers=headers,
                      timeout=30) as response:  # fmt: skip
        return response.status_code, [line.encode() for line in response.iter_lines() if line]


def _mid_stream_error(world: World, lines: list[bytes]) -> str:
    """The stream's error message, after checking it is billed once as failed."""
    data = [orjson.loads(line.removeprefix(b"data: ")) for line in lines if line != b"data: [DONE]"]
    assert data[0]["choices"][0]["delta"]["content"] == "Hello"
    assert lines[-1] == b"data: [DONE]"
    _billed_as_failed_mid_stream(world, data[0]["id"])
    return str(data[-1]["error"]["message"])


def _messages_stream_fails_malformed(world: World) -> None:
    """A /v1/messages stream ends with a malformed-chunk error event, billed as failed."""
    anthropic = {"x-api-key": world.key, "anthropic-version": "2023-06-01"}
    status, lines = _streamed(world, "/v1/messages", anthropic)
    assert status == 200
    assert lines[-2] == b"event: error" and b"malformed stream chunk" in lines[-1]
    generation_id = orjson.loads(lines[1].removeprefix(b"data: "))["message"]["id"]
    _billed_as_failed_mid_stream(world, generation_id)


def _billed_as_failed_mid_stream(world: World, generation_id: str) -> None:
    """Billed once for what was answered ("Hello"), as failed mid-stream, the hold settled."""
    record = world.usage_record(generation_id)
    assert record.status == "failed" and record.error_type == "upstream_error_mid_stream"
    assert record.completion_tokens > 0 and record.cost > 0
    assert Reservation.objects.get(generation_id=generation_id).state == "settled"
    ledger = LedgerEntry.objects.get(idempotency_key=f"usage:{generation_id}")
    assert ledger.amount == -record.cost


def test_an_event_past_the_bound_mid_stream_fails_the_stream(
    world: World, own_host: StreamingHost
) -> None:
    # Before: the 3 MiB event was read whole (and searched again at every read) and then
    # failed as a malformed chunk; 256 MiB of it would have held the worker for hours.
    own_host.stream = FIRST + ENDLESS + b'"}}]}\n\n' + END

    status, lines = _streamed(world)

    assert status == 200
    message = _mid_stream_error(world, lines)
    assert f"an event of the stream is larger than {EVENT_LIMIT} bytes" in message


def test_an_event_past_the_bound_before_any_content_fails_the_attempt(
    world: World, own_host: StreamingHost
) -> None:
    own_host.stream = ENDLESS + b'"}}]}\n\n' + END

    status, lines = _streamed(world)

    assert status == 502
    error = orjson.loads(b"".join(lines))["error"]
    assert [f"{a['error']}: {a.get('detail', '')}" for a in error["metadata"]["attempts"]] == [
        f"stream_error: an event of the stream is larger than {EVENT_LIMIT} bytes"
    ]


def test_an_event_that_is_not_utf8_is_a_malformed_stream(
    world: World, own_host: StreamingHost
) -> None:
    # Before: the UnicodeDecodeError escaped the relay (not an upstream error): the stream was
    # cut without an error event.
    own_host.stream = FIRST + stream_chunk({"content": "ok"}, None).replace(b"ok", b"o\xffk") + END

    status, lines = _streamed(world)

    assert status == 200
    assert "not UTF-8" in _mid_stream_error(world, lines)


def test_events_are_read_alike_however_the_stream_is_cut() -> None:
    # The parser keeps its place between reads (it no longer searches the whole buffer again):
    # every cut of a stream — a CRLF split between reads included — gives the same events.
    stream = (
        b'event: a\r\ndata: {"x":\r\n\r\n: keep\r\n\r\ndata: l1\ndata: l2\n\ndata: [DONE]\n\nda'
    )

    async def events(size: int) -> list[tuple[str | None, str]]:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(stream), size):
                yield stream[start : start + size]

        return [event async for event in sse_events(chunks(), max_event=64)]

    expected = [("a", '{"x":'), (None, "l1\nl2"), (None, "[DONE]")]
    for size in range(1, len(stream) + 1):
        assert asyncio.run(events(size)) == expected, size

    async def endless() -> AsyncIterator[bytes]:
        yield b"data: "
        while True:
            yield b"x" * 10

    async def read_endless() -> None:
        async for _ in sse_events(endless(), max_event=64):
            pass

    with pytest.raises(UpstreamError, match="larger than 64 bytes"):
        asyncio.run(read_endless())


def test_a_tool_call_index_that_is_not_a_number_is_a_malformed_stream(
    world: World, own_host: StreamingHost
) -> None:
    # Before: the Messages encoder's TypeError (an unhashable index) escaped the relay: the
    # stream was cut without an error event and the answered text billed 0, its hold released.
    call = {"index": {}, "id": "call_1", "type": "function",
            "function": {"name": "f", "arguments": "{}"}}  # fmt: skip
    own_host.stream = FIRST + stream_chunk({"tool_calls": [call]}, None) + END

    _messages_stream_fails_malformed(world)


def test_a_choice_that_is_not_an_object_is_a_malformed_stream(
    world: World, own_host: StreamingHost
) -> None:
    # Before: the decoder's AttributeError escaped the relay, as above.
    own_host.stream = FIRST + b'data: {"choices": [1]}\n\n' + END

    status, lines = _streamed(world)

    assert status == 200
    assert "malformed stream chunk" in _mid_stream_error(world, lines)


@pytest.mark.parametrize("delta", [[], 0, "", False])
def test_a_falsy_delta_that_is_not_an_object_is_a_malformed_stream(
    world: World, own_host: StreamingHost, delta: object
) -> None:
    # Only an absent or null delta is empty. Before: ``delta or {}`` read ``[]``, ``0``, ``""``
    # and ``false`` as an empty delta and relayed the stream as whole, though ``[1]`` was refused.
    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    own_host.stream = FIRST + b"data: " + orjson.dumps(chunk) + b"\n\n" + END

    status, lines = _streamed(world)

    assert status == 200
    assert "malformed stream chunk" in _mid_stream_error(world, lines)


def test_content_as_a_list_of_parts_is_relayed(world: World, own_host: StreamingHost) -> None:
    # Mistral's Magistral models stream ``delta.content`` as a list of parts (thinking, text,
    # reference). Before: every such chunk was "a delta whose text is not a string", a malformed
    # stream, though the same content unstreamed was read.
    thinking = {"type": "thinking", "thinking": [{"type": "text", "text": "Hmm."}]}
    parts = [{"type": "text", "text": "Hi"}, {"type": "reference", "reference_ids": [1]}]
    own_host.stream = (
        stream_chunk({"role": "assistant", "content": ""}, None)
        + stream_chunk({"content": [thinking]}, None)
        + stream_chunk({"content": parts}, None)
        + stream_chunk({"content": [{"type": "unknown"}]}, None)
        + stream_chunk({"content": " Hello"}, None)
        + END
    )

    status, lines = _streamed(world)

    assert status == 200
    assert lines[-1] == b"data: [DONE]"
    data = [orjson.loads(line.removeprefix(b"data: ")) for line in lines[:-1]]
    assert not [chunk for chunk in data if "error" in chunk]
    deltas = [chunk["choices"][0]["delta"] for chunk in data if chunk.get("choices")]
    assert "".join(delta.get("content") or "" for delta in deltas) == "Hi Hello"
    assert "".join(delta.get("reasoning") or "" for delta in deltas) == "Hmm."
    assert world.usage_record(data[0]["id"]).status == "succeeded"


def test_reasoning_details_that_are_not_objects_are_a_malformed_stream(
    world: World, own_host: StreamingHost
) -> None:
    # Before: the Messages encoder's AttributeError (``1.get``) escaped the relay: the stream was
    # cut without an error event and the answered text billed 0. Now the chunk check refuses it,
    # and any shape the check misses fails the same way where the encoder reads it.
    own_host.stream = FIRST + stream_chunk({"reasoning_details": [1]}, None) + END

    _messages_stream_fails_malformed(world)


_CUSTOM_CALL = {"index": 0, "id": "c", "type": "custom",
                "custom": {"name": "run_sql", "input": ["SELECT 1"]}}  # fmt: skip
_LIST_ARGS_CALL = {"index": 0, "id": "c", "type": "function",
                   "function": {"name": "f", "arguments": []}}  # fmt: skip
_REFUSED_WHOLE = [
    {"reasoning_content": {"text": "Hmm."}},
    {"tool_calls": [_CUSTOM_CALL]},
    {"reasoning_details": [{"type": "reasoning.text", "text": ["Hmm."]}]},
    # Empty non-strings, refused whole (before: ``value or ""`` let them through a stream).
    {"reasoning_content": {}},
    {"refusal": False},
    {"tool_calls": [_LIST_ARGS_CALL]},
    {"tool_calls": [{"index": 0, "id": 0, "type": "custom", "custom": []}]},
    {"reasoning_details": [{"type": "reasoning.text", "text": 0}]},
]


@pytest.mark.parametrize("delta", _REFUSED_WHOLE)
def test_what_a_whole_answer_refuses_a_stream_refuses_too(
    world: World, own_host: StreamingHost, delta: dict[str, object]
) -> None:
    # One check of an answer's fields, streamed or whole (``answer_checks``' field lists).
    # Before: the stream's own list skipped these, relayed to the client as they came.
    own_host.stream = FIRST + stream_chunk(delta, None) + END

    status, lines = _streamed(world)

    assert status == 200
    assert "malformed stream chunk" in _mid_stream_error(world, lines)


def test_a_chunk_our_decoder_cannot_read_is_logged_without_its_content(
    world: World, own_host: StreamingHost, caplog: pytest.LogCaptureFixture
) -> None:
    # The error may be a bug of ours (it trips the provider's health as a malformed stream):
    # before, nothing was logged. The log names the exception and where, never the chunk.
    own_host.stream = FIRST + b'data: {"choices": [1], "model": "marker-7f3a"}\n\n' + END

    with caplog.at_level("WARNING", logger="routing.providers.stream_checks"):
        status, lines = _streamed(world)

    assert status == 200
    assert "malformed stream chunk" in _mid_stream_error(world, lines)
    [record] = [r for r in caplog.records if r.name == "routing.providers.stream_checks"]
    assert record.levelname == "WARNING"
    assert "OpenAIStreamDecoder" in record.getMessage() and "AttributeError" in record.getMessage()
    assert "openai_compat.py" in record.getMessage()
    assert "marker-7f3a" not in caplog.text
