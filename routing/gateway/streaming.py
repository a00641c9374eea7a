"""A stream's attempt: opening it (any failure before the first content may fall back to the
next candidate) and pumping it to the client (from then on a failure ends the stream with an
error event, and what was generated is billed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import orjson
from django.conf import settings

from routerhub.errors import error_body
from routing.gateway import health
from routing.gateway.attempts import (
    ERROR_BODY_BYTES,
    client_for,
    deadline_left,
    failed,
    rejected,
    request_extensions,
    scrubbed,
    skip,
    timed_out,
    transport_failed,
    upstream_request,
)
from routing.gateway.exchange import (
    UNUSABLE,
    Exchange,
    answer_headers,
    bill,
    record_success,
    response_head,
)
from routing.gateway.planning import Candidate
from routing.gateway.trace import delta_texts
from routing.gateway.upstream import (
    body_chunks,
    body_prefix,
    response_release,
    upstream_timeout,
    upstream_url,
)
from routing.gateway.usage_estimate import impossible, partial_usage
from routing.ingress.anthropic import MessagesStreamEncoder
from routing.providers import ADAPTERS
from routing.providers.answer_checks import generated_chars, has_answer
from routing.providers.base import (
    JSON,
    StreamDecoder,
    UpstreamError,
    UpstreamRequest,
    Usage,
    sse_events,
)
from routing.providers.stream_checks import choices_fed, chunk_read


def deltas_answer(choices: list[JSON]) -> bool:
    """Whether stream chunks hold anything to serve: text, reasoning or a tool call."""
    return any(has_answer(c.get("delta") or {}) for c in choices)


@dataclass
class OpenStream:
    response: httpx.Response
    events: AsyncIterator[tuple[str | None, str]]
    decoder: StreamDecoder
    first: list[JSON]


async def open_stream(ex: Exchange, candidate: Candidate) -> OpenStream | None:
    """Connect and read until the first content arrives; any failure so far may fall back."""
    endpoint, ex.trying_byok = candidate.endpoint, candidate.is_byok
    if skip(ex, endpoint):
        return None
    upstream = upstream_request(ex, candidate, stream=True)
    client = client_for(candidate)
    request = client.build_request(
        "POST",
        upstream_url(upstream.url),
        content=upstream.content(),
        headers=upstream.headers,
        timeout=upstream_timeout(),
        extensions=request_extensions(ex, candidate),
    )
    try:  # connecting and the first content are within the request's deadline (``attempts``)
        async with asyncio.timeout(deadline_left(ex)):
            response = await client.send(request, stream=True)
    except (httpx.HTTPError, TimeoutError) as exc:
        transport_failed(ex, endpoint, exc)
        return None
    recorded = len(ex.attempts)
    try:
        async with asyncio.timeout(deadline_left(ex)):
            return await _first_content(ex, candidate, upstream, response)
    except TimeoutError:  # the deadline passed before the first content: as a read timeout
        if len(ex.attempts) == recorded:  # (not if it came as a failure was being closed)
            timed_out(ex, endpoint)
        await _closed(response)
        return None
    except BaseException:  # cancelled (the client left): the connection (and its slot) go back
        await _closed(response)
        raise


async def _closed(response: httpx.Response) -> None:
    await response.aclose()
    response_release(response)


async def _first_content(
    ex: Exchange, candidate: Candidate, upstream: UpstreamRequest, response: httpx.Response
) -> OpenStream | None:
    """Read until the first content; None, with the response closed, on any failure so far."""
    endpoint, adapter = candidate.endpoint, ADAPTERS[candidate.endpoint.api_style]
    if response.status_code != 200:
        ex.sending = None  # refused: not billed while its error body is read
        try:
            raw = await body_prefix(response, ERROR_BODY_BYTES)
        except httpx.HTTPError as exc:  # a body that is not what its encoding says
            raw = str(exc).encode()
        await _closed(response)
        rejected(
            ex, endpoint, response.status_code, scrubbed(adapter.error_message(raw), candidate)
        )
        return None
    decoder = adapter.stream_decoder(upstream)
    max_event = settings.GATEWAY_MAX_SSE_EVENT_BYTES
    events = sse_events(body_chunks(response), max_event=max_event).__aiter__()
    try:
        while True:
            event, data = await events.__anext__()
            first = choices_fed(decoder, event, data)
            if first or decoder.finished:
                break
    except StopAsyncIteration:
        error, detail = "empty_stream", "the stream ended before any content"
    except httpx.TimeoutException:
        error, detail = "timeout", ""
    except (httpx.HTTPError, UpstreamError) as exc:
        error, detail = "stream_error", str(exc)
    else:
        if not (decoder.finished and impossible(decoder.usage) and not deltas_answer(first)):
            ex.first_byte_at = time.monotonic()
            return OpenStream(response, events, decoder, first)
        error, detail = "unusable_response", UNUSABLE
    if error == "timeout":  # recorded before the connection closes, as a failure is
        timed_out(ex, endpoint)
    else:
        failed(ex, endpoint, error, scrubbed(detail, candidate))
    await _closed(response)
    return None


async def pump(ex: Exchange, candidate: Candidate, opened: OpenStream) -> None:
    """Relay the rest of the stream; from here on there is no fallback, only an SSE error."""
    ex.served_by(candidate)
    ex.decoder = opened.decoder
    encoder = (
        MessagesStreamEncoder(ex.generation_id, candidate.endpoint.model_id, ex.plan.routing)
        if ex.anthropic
        else None
    )
    head = response_head(ex, "chat.completion.chunk")
    failure = await _relay(ex, opened, head, encoder)
    if failure is not None:
        ours = isinstance(failure, TimeoutError)  # our deadline, not the provider's failure
        if not candidate.is_byok and not ours:
            health.health_record_failure(candidate.endpoint.id)
        bill(ex, partial_usage(ex), status="failed", error_type="upstream_error_mid_stream")
        message = (
            "The request's deadline (GATEWAY_TOTAL_TIMEOUT, "
            f"{settings.GATEWAY_TOTAL_TIMEOUT:g} s) passed mid-stream."
            if ours
            else f"The provider failed mid-stream: {failure or type(failure).__name__}"
        )
        await _stream_error(ex, candidate, encoder, message)
        return
    if not ex.answered and impossible(opened.decoder.usage):
        # The provider said nothing and counted the impossible: an error, not a bill.
        bill(ex, Usage(), status="failed", error_type="upstream_unusable_response")
        await _stream_error(ex, candidate, encoder, UNUSABLE)
        return
    usage = partial_usage(ex)
    cost = bill(ex, usage, status="succeeded")
    if encoder is not None:
        await ex.req.write(encoder.finish(usage, float(cost)))
    elif usage_requested(ex.body):
        tail = head | {
            "choices": [],
            "usage": usage.to_openai() | {"cost": float(cost), "is_byok": ex.is_byok},
        }
        if ex.stream_tail is not None:
            tail |= ex.stream_tail()
        await ex.req.write(b"data: " + orjson.dumps(tail) + b"\n\ndata: [DONE]\n\n")
    else:
        await ex.req.write(b"data: [DONE]\n\n")
    await ex.req.end()
    record_success(ex, usage)


async def _relay(
    ex: Exchange, opened: OpenStream, head: JSON, encoder: MessagesStreamEncoder | None
) -> Exception | None:
    """Start the client's stream and relay the provider's to its end; the provider's failure, if
    it failed. However this ends (a cancellation too: the client left), the answer is closed, so
    its connection and its organization's slot (``tenant_slots``) go back."""
    try:
        await ex.req.start_stream(headers=answer_headers(ex))
        if encoder is not None:
            await ex.req.write(encoder.start(opened.decoder.usage))
        await _emit(ex, head, encoder, opened.first)
        async with asyncio.timeout(max(deadline_left(ex), 1.0)):
            while not opened.decoder.finished:
                try:
                    event, data = await opened.events.__anext__()
                except StopAsyncIteration:
                    if not ex.finish_reason_seen:
                        # Closed cleanly, but before the provider said the answer was done.
                        raise UpstreamError("the stream ended before the answer did") from None
                    break
                await _emit(ex, head, encoder, choices_fed(opened.decoder, event, data))
    except (httpx.HTTPError, UpstreamError, TimeoutError) as exc:
        return exc
    finally:
        await _closed(opened.response)
    return None


def usage_requested(body: JSON) -> bool:
    """Whether the client asked for the stream's usage chunk (``choices: []``), as OpenAI sends
    it only then: ``stream_options.include_usage`` or OpenRouter's ``usage.include``. The
    upstream is asked for usage either way: billing needs it, the client may not want it."""
    stream_options, usage = body.get("stream_options"), body.get("usage")
    return bool(
        (isinstance(stream_options, dict) and stream_options.get("include_usage"))
        or (isinstance(usage, dict) and usage.get("include"))
    )


async def _stream_error(
    ex: Exchange, candidate: Candidate, encoder: MessagesStreamEncoder | None, message: str
) -> None:
    """End a started stream with an error event (API.md: the 502 of a stream)."""
    message = scrubbed(message, candidate)
    if encoder is not None:
        await ex.req.write(MessagesStreamEncoder.error("api_error", message))
    else:
        metadata = {"provider": candidate.endpoint.provider_slug}
        error = error_body(502, "upstream_error", message, None, metadata)
        await ex.req.write(b"data: " + orjson.dumps(error) + b"\n\ndata: [DONE]\n\n")
    await ex.req.end()


async def _emit(
    ex: Exchange, head: JSON, encoder: MessagesStreamEncoder | None, choices: list[JSON]
) -> None:
    if ex.decoder is not None and ex.decoder.service_tier:
        head["service_tier"] = ex.decoder.service_tier  # the tier served: this chunk on, as OpenAI
    if not choices:
        return
    for choice in choices:
        ex.finish_reason_seen = ex.finish_reason_seen or bool(choice.get("finish_reason"))
        delta = choice.get("delta") or {}
        ex.answered = ex.answered or deltas_answer([choice])
        ex.generated_chars += generated_chars(delta)
    if ex.key.prompt_logging:
        ex.answer_parts.extend(delta_texts(choices))
    if encoder is not None:
        # Not our own stream to trust: the encoder reads the provider's choices, and a shape the
        # chunk checks miss must fail as a malformed stream, not escape the relay (before, the
        # encoder's exception cut the client's stream with no error event and billed it 0).
        encoded = chunk_read(lambda: b"".join(encoder.chunk(c) for c in choices), "Messages")
        await ex.req.write(encoded)
    else:
        chunks = [head | {"choices": part} for part in finish_apart(choices)]
        await ex.req.write(b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks))


# What a choice's finishing chunk carries (the finish reason first, kept off the content).
ENDING_KEYS = ("finish_reason", "native_finish_reason", "stop_sequence")


def finish_apart(choices: list[JSON]) -> list[list[JSON]]:
    """The choices of one upstream event as OpenAI chunks. OpenAI ends a choice with a chunk of
    its own (an empty delta and the ``finish_reason``); a provider that sends the last delta and
    the finish together (Gemini) is sent as two chunks, the same way: openai-node's stream
    helper ends a tool call (``tool_calls.function.arguments.done``) only on a finish that comes
    after the call's deltas, so it never announced a Gemini tool call."""
    if not any(c.get("finish_reason") and c.get("delta") for c in choices):
        return [choices]
    content: list[JSON] = []
    finish: list[JSON] = []
    for choice in choices:
        if not (choice.get("finish_reason") and choice.get("delta")):
            content.append(choice)
            continue
        ending = {"index": choice.get("index", 0), "delta": {}}
        ending |= {k: choice[k] for k in ENDING_KEYS if k in choice}
        content.append(
            {k: v for k, v in choice.items() if k not in ENDING_KEYS[1:]} | {"finish_reason": None}
        )
        finish.append(ending)
    return [content, finish]
