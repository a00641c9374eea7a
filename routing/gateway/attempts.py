"""Trying candidates: one attempt at one endpoint, and a stream's opening and pumping.

Every failure before the first byte reaches the client is recorded on the exchange
(``failed``; the circuit breaker hears of platform endpoints' failures) and lets the caller try
the next candidate; ``exhausted`` is the error when none answered. Once a stream has been
opened (``open_stream``), ``pump`` relays it to the end: a failure from then on ends the stream
with an error event, and what was generated is billed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import orjson
from django.conf import settings

from routerhub.errors import (
    ApiError,
    BadRequest,
    NoProviderAvailable,
    UpstreamFailed,
    UpstreamTimeout,
    error_body,
)
from routing.egress import tenant_http_client
from routing.gateway import health
from routing.gateway.catalog_cache import EndpointInfo
from routing.gateway.exchange import (
    UNUSABLE,
    Exchange,
    answer_headers,
    bill,
    impossible,
    partial_usage,
    record_success,
    response_head,
    sent_trace,
)
from routing.gateway.needs import readable_body
from routing.gateway.planning import Candidate
from routing.gateway.request_shape import max_tokens_for
from routing.gateway.trace import delta_texts
from routing.gateway.upstream import (
    body_chunks,
    body_prefix,
    http_client,
    is_retryable_status,
    response_release,
    upstream_timeout,
    upstream_url,
)
from routing.ingress.anthropic import MessagesStreamEncoder
from routing.providers import ADAPTERS
from routing.providers.base import (
    JSON,
    Completion,
    StreamDecoder,
    Target,
    UpstreamError,
    UpstreamRequest,
    Usage,
    sse_events,
    text_of,
)
from routing.providers.cache_marks import marks_strip

logger = logging.getLogger(__name__)
ERROR_BODY_BYTES = 64 * 1024  # of a provider's error answer: its message is near the start


def skip(ex: Exchange, endpoint: EndpointInfo) -> bool:
    if ex.trying_byok:
        return False
    wait = health.breaker_open_for(endpoint.id)
    if wait > 0:
        ex.skipped_for.append(wait)
        return True
    return False


def failed(ex: Exchange, endpoint: EndpointInfo, error: str, detail: str = "") -> None:
    ex.sending = None  # the provider's failure: nothing of this attempt is billed
    if not ex.trying_byok:
        health.health_record_failure(endpoint.id)
    ex.attempts.append(
        {
            "model": endpoint.model_id,
            "provider": endpoint.provider_slug,
            "error": error,
            **({"detail": detail[:300]} if detail else {}),
        }
    )
    # Not the provider's message: providers quote the request (prompt text) in errors.
    logger.info("upstream %s/%s failed: %s", endpoint.provider_slug, endpoint.model_id, error)


def transport_failed(ex: Exchange, endpoint: EndpointInfo, exc: Exception) -> None:
    """An attempt that got no response: it timed out (the connection's or the request's
    deadline) or could not connect."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        failed(ex, endpoint, "timeout")
    elif isinstance(exc, httpx.DecodingError):  # past the size bound, or an encoding refused
        failed(ex, endpoint, "malformed_response", str(exc))
    else:
        failed(ex, endpoint, "connection_error", str(exc) or type(exc).__name__)


def scrubbed(text: str, candidate: Candidate) -> str:
    """A provider's error text without our credential, which some providers quote back."""
    if candidate.api_key and len(candidate.api_key) >= 8:
        return text.replace(candidate.api_key, "[credential]")
    return text


def rejected(ex: Exchange, endpoint: EndpointInfo, status: int, message: str) -> None:
    if is_retryable_status(status):
        failed(ex, endpoint, f"status_{status}", message)
        return
    # The client's request is at fault (400, 413, 422): another provider would refuse it too.
    raise BadRequest(
        f"The provider rejected the request: {message}",
        metadata={
            "provider": endpoint.provider_slug,
            "model": endpoint.model_id,
            "upstream_status": status,
        },
    )


def exhausted(ex: Exchange) -> ApiError:
    metadata = {"attempts": ex.attempts, "generation_id": ex.generation_id}
    if not ex.attempts:
        retry_after = str(math.ceil(max(ex.skipped_for, default=1.0)))
        return NoProviderAvailable(
            "Every provider for this request failed recently and is paused; retry shortly.",
            metadata=metadata,
            headers={"Retry-After": retry_after},
        )
    if all(attempt["error"] == "timeout" for attempt in ex.attempts):
        return UpstreamTimeout("The provider did not answer in time.", metadata=metadata)
    tried = ", ".join(f"{a['provider']} ({a['error']})" for a in ex.attempts)
    return UpstreamFailed(f"Every provider failed: {tried}.", metadata=metadata)


def client_for(candidate: Candidate) -> httpx.AsyncClient:
    # A host the tenant chose is called through the client that refuses non-public addresses.
    return tenant_http_client() if candidate.base_url else http_client()


def _target(ex: Exchange, candidate: Candidate) -> Target:
    endpoint = candidate.endpoint
    return Target(
        base_url=candidate.base_url or endpoint.base_url,
        upstream_model=endpoint.upstream_model,
        api_key=candidate.api_key,
        max_tokens=max_tokens_for(ex.body, endpoint),
        options=endpoint.options,
    )


def _upstream_request(ex: Exchange, candidate: Candidate, *, stream: bool) -> UpstreamRequest:
    """The provider's request. Validation refuses malformed content first; should a translation
    still fail on what a client sent, that is a 400 naming the request, logged as a bug."""
    endpoint = candidate.endpoint
    body = readable_body(ex.body, endpoint)
    if endpoint.api_style != "anthropic":
        body = marks_strip(body)  # no explicit prompt caching: dropped, and said so (README)
    try:
        return ADAPTERS[endpoint.api_style].build_request(
            body, _target(ex, candidate), stream=stream
        )
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        logger.exception("could not translate %s for %s", ex.generation_id, endpoint.api_style)
        raise BadRequest(
            f"RouterHub could not translate this request for {endpoint.provider_slug} "
            f"({type(exc).__name__}); check the content parts' shapes against API.md.",
            param="messages",
        ) from exc


async def attempt(ex: Exchange, candidate: Candidate) -> Completion | None:
    endpoint, ex.trying_byok = candidate.endpoint, candidate.is_byok
    if skip(ex, endpoint):
        return None
    adapter = ADAPTERS[endpoint.api_style]
    upstream = _upstream_request(ex, candidate, stream=False)
    try:
        async with asyncio.timeout(settings.GATEWAY_TOTAL_TIMEOUT):
            response = await client_for(candidate).post(
                upstream_url(upstream.url),
                content=upstream.content(),
                headers=upstream.headers,
                timeout=upstream_timeout(),
                extensions=sent_trace(ex, candidate),
            )
    except (httpx.HTTPError, TimeoutError) as exc:
        transport_failed(ex, endpoint, exc)
        return None
    ex.first_byte_at = ex.first_byte_at or time.monotonic()
    if response.status_code != 200:
        message = scrubbed(adapter.error_message(response.content), candidate)
        rejected(ex, endpoint, response.status_code, message)
        return None
    try:
        completion = adapter.parse_response(orjson.loads(response.content), upstream)
    except (orjson.JSONDecodeError, UpstreamError, KeyError, TypeError, AttributeError) as exc:
        failed(ex, endpoint, "malformed_response", scrubbed(str(exc), candidate))
        return None
    if impossible(completion.usage) and not choices_answer(completion.choices):
        # Nothing to serve and nothing true to bill: the next candidate, or 502.
        failed(ex, endpoint, "unusable_response", UNUSABLE)
        return None
    return completion


def choices_answer(choices: list[JSON]) -> bool:
    """Whether a whole answer holds anything to serve: text, reasoning or a tool call."""
    return any(
        text_of((c.get("message") or {}).get("content"))
        or (c.get("message") or {}).get("reasoning")
        or (c.get("message") or {}).get("tool_calls")
        for c in choices
    )


def deltas_answer(choices: list[JSON]) -> bool:
    """Whether stream chunks hold anything to serve: text, reasoning or a tool call."""
    return any(
        (c.get("delta") or {}).get(name)
        for c in choices
        for name in ("content", "reasoning", "tool_calls")
    )


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
    adapter = ADAPTERS[endpoint.api_style]
    upstream = _upstream_request(ex, candidate, stream=True)
    client = client_for(candidate)
    request = client.build_request(
        "POST",
        upstream_url(upstream.url),
        content=upstream.content(),
        headers=upstream.headers,
        timeout=upstream_timeout(),
        extensions=sent_trace(ex, candidate),
    )
    try:
        response = await client.send(request, stream=True)
    except (httpx.HTTPError, TimeoutError) as exc:
        transport_failed(ex, endpoint, exc)
        return None
    if response.status_code != 200:
        ex.sending = None  # refused: not billed while its error body is read
        try:
            raw = await body_prefix(response, ERROR_BODY_BYTES)
        except httpx.HTTPError as exc:  # a body that is not what its encoding says
            raw = str(exc).encode()
        await response.aclose()
        response_release(response)
        rejected(
            ex, endpoint, response.status_code, scrubbed(adapter.error_message(raw), candidate)
        )
        return None
    decoder = adapter.stream_decoder(upstream)
    events = sse_events(body_chunks(response)).__aiter__()
    try:
        while True:
            event, data = await events.__anext__()
            first = decoder.feed(event, data)
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
    ex.sending = None  # failed: not billed while the connection closes
    await response.aclose()
    response_release(response)
    failed(ex, endpoint, error, scrubbed(detail, candidate))
    return None


async def pump(ex: Exchange, candidate: Candidate, opened: OpenStream) -> None:
    """Relay the rest of the stream; from here on there is no fallback, only an SSE error."""
    ex.endpoint, ex.is_byok, ex.decoder = candidate.endpoint, candidate.is_byok, opened.decoder
    encoder = (
        MessagesStreamEncoder(ex.generation_id, candidate.endpoint.model_id, ex.plan.routing)
        if ex.anthropic
        else None
    )
    await ex.req.start_stream(headers=answer_headers(ex))
    if encoder is not None:
        await ex.req.write(encoder.start(opened.decoder.usage))
    head = response_head(ex, "chat.completion.chunk")
    failure: Exception | None = None
    try:
        await _emit(ex, head, encoder, opened.first)
        remaining = settings.GATEWAY_TOTAL_TIMEOUT - (time.monotonic() - ex.req.started)
        async with asyncio.timeout(max(remaining, 1.0)):
            while not opened.decoder.finished:
                try:
                    event, data = await opened.events.__anext__()
                except StopAsyncIteration:
                    if not ex.finish_reason_seen:
                        # Closed cleanly, but before the provider said the answer was done.
                        raise UpstreamError("the stream ended before the answer did") from None
                    break
                await _emit(ex, head, encoder, opened.decoder.feed(event, data))
    except (httpx.HTTPError, UpstreamError, TimeoutError) as exc:
        failure = exc
    finally:
        await opened.response.aclose()
        response_release(opened.response)
    if failure is not None:
        if not candidate.is_byok:
            health.health_record_failure(candidate.endpoint.id)
        bill(ex, partial_usage(ex), status="failed", error_type="upstream_error_mid_stream")
        message = f"The provider failed mid-stream: {failure or type(failure).__name__}"
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
    if not choices:
        return
    for choice in choices:
        ex.finish_reason_seen = ex.finish_reason_seen or bool(choice.get("finish_reason"))
        delta = choice.get("delta") or {}
        ex.answered = ex.answered or deltas_answer([choice])
        ex.generated_chars += len(delta.get("content") or "") + len(delta.get("reasoning") or "")
        for call in delta.get("tool_calls") or []:
            ex.generated_chars += len((call.get("function") or {}).get("arguments") or "")
    if ex.key.prompt_logging:
        ex.answer_parts.extend(delta_texts(choices))
    if encoder is not None:
        await ex.req.write(b"".join(encoder.chunk(choice) for choice in choices))
    else:
        chunks = [head | {"choices": part} for part in finish_apart(choices)]
        await ex.req.write(b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks))


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
        ending |= {k: choice[k] for k in ("finish_reason", "native_finish_reason") if k in choice}
        content.append(
            {k: v for k, v in choice.items() if k != "native_finish_reason"}
            | {"finish_reason": None}
        )
        finish.append(ending)
    return [content, finish]
