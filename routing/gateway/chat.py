"""The gateway's request path, top to bottom: ``POST /v1/chat/completions`` and ``/v1/messages``.

authenticate → parse and validate → plan (which endpoints, in which order) → rate limit →
reserve the maximum cost → try candidates until one answers (fallback only before the first
byte reaches the client) → respond or stream → ``_settle`` the real cost, exactly once, whatever
happened (success, failure, client disconnect).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import suppress
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import httpx
import orjson
from django.conf import settings

from accounts.keys import AuthenticatedKey, bearer_token, key_authenticate_async
from billing.models import UsageFlag
from billing.outbox import usage_record_async
from billing.pricing import usage_cost
from billing.services import (
    ReservationRequest,
    UsageDraft,
    credits_reserve_async,
)
from routerhub.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    NoProviderAvailable,
    NotFound,
    Unauthorized,
    UpstreamFailed,
    UpstreamTimeout,
    error_body,
)
from routerhub.money import ZERO
from routing.egress import tenant_http_client
from routing.gateway import health
from routing.gateway.catalog_cache import EndpointInfo, catalog_get
from routing.gateway.http import GatewayRequest
from routing.gateway.limits import rate_limit_add_tokens, rate_limit_admit, rate_limit_headers
from routing.gateway.openrouter_request import openrouter_request
from routing.gateway.planning import Candidate, Plan, plan_request, request_needs
from routing.gateway.request_shape import (
    estimate_prompt_tokens,
    max_tokens_for,
    output_token_bound,
    prompt_token_bound,
    request_validate,
    reservation_for,
)
from routing.gateway.upstream import http_client, is_retryable_status, upstream_timeout
from routing.providers import ADAPTERS
from routing.providers.anthropic_ingress import (
    MessagesStreamEncoder,
    anthropic_only_fields,
    canonical_to_messages_response,
    messages_request_to_canonical,
)
from routing.providers.base import (
    JSON,
    Completion,
    StreamDecoder,
    Target,
    UpstreamError,
    Usage,
    sse_events,
    text_of,
)
from routing.routers import messages_prompt

logger = logging.getLogger(__name__)

_UNUSABLE = "the provider returned no answer and token counts that cannot be true"


@dataclass
class Exchange:
    """Everything one request accumulates on its way through the gateway."""

    req: GatewayRequest
    key: AuthenticatedKey
    body: JSON
    anthropic: bool
    plan: Plan
    generation_id: str
    prompt_estimate: int
    reserved: Decimal
    draft: UsageDraft
    attempts: list[JSON] = field(default_factory=list)
    skipped_for: list[float] = field(default_factory=list)
    endpoint: EndpointInfo | None = None
    is_byok: bool = False
    decoder: StreamDecoder | None = None
    generated_chars: int = 0
    answered: bool = False  # a stream relayed content, reasoning or a tool call
    # The candidate being tried is the organization's own key (or host): its failures are its
    # own and neither open nor consult the circuit breaker every organization shares.
    trying_byok: bool = False
    finish_reason_seen: bool = False
    # prompt_token_bound(body): the most tokens the prompt can be (0 where none was computed).
    prompt_bound: int = 0
    first_byte_at: float | None = None


# --- entry points --------------------------------------------------------------------------------


async def chat_completions(req: GatewayRequest) -> None:
    key = await _authenticate(req, anthropic=False)
    await _serve(req, key, await req.json(), anthropic=False)


async def messages(req: GatewayRequest) -> None:
    key = await _authenticate(req, anthropic=True)
    await _serve(req, key, messages_request_to_canonical(await req.json()), anthropic=True)


async def messages_count_tokens(req: GatewayRequest) -> None:
    """``POST /v1/messages/count_tokens``: free, and counted as a request by the rate limiter.
    The count is the gateway's own estimate (``estimate_prompt_tokens``, on the high side), the
    same for every model, which the ``x-routerhub-token-count: estimate`` header says. The model
    must be one the key could call (a router's slug is not looked up: nothing is routed)."""
    key = await _authenticate(req, anthropic=True)
    body = await req.json()
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required (a string).", param="model")
    canonical = messages_request_to_canonical(body, counting=True)
    if key.allowed_models and model not in key.allowed_models:
        raise Forbidden(f"This key may not use the model '{model}'.", param="model")
    if not model.startswith("router/") and model not in (await catalog_get()).models:
        raise NotFound(f"Unknown model '{model}'; GET /v1/models lists them.", param="model")
    await rate_limit_admit(key, 0)
    count = {"input_tokens": estimate_prompt_tokens(canonical)}
    await req.respond_json(200, count, headers={"x-routerhub-token-count": "estimate"})


async def _authenticate(req: GatewayRequest, *, anthropic: bool) -> AuthenticatedKey:
    authorization = req.headers.get("authorization")
    if anthropic and not authorization:
        token = req.headers.get("x-api-key", "").strip()  # what the anthropic SDK sends
        if not token:
            raise Unauthorized(
                "Missing API key: send 'x-api-key: rh-…' or 'Authorization: Bearer rh-…'."
            )
    else:
        token = bearer_token(authorization)
    key = await key_authenticate_async(token)
    if key.is_management:
        raise Forbidden("Management keys (rh-mgmt-) cannot call inference; use an rh-live- key.")
    return key


# --- the request path ----------------------------------------------------------------------------


async def _serve(
    req: GatewayRequest, key: AuthenticatedKey, body: JSON, *, anthropic: bool
) -> None:
    catalog = await catalog_get()
    body = openrouter_request(body, catalog)  # model variants, provider.sort objects, reasoning
    request_validate(body)
    needs = request_needs(body)
    prompt_bound = prompt_token_bound(body)
    plan = await plan_request(body=body, key=key, catalog=catalog, needs=needs,
                              prompt_bound=prompt_bound)  # fmt: skip
    prompt_estimate = estimate_prompt_tokens(body)
    await rate_limit_admit(key, prompt_estimate)
    generation_id = generation_id_new()
    reserved = max(reservation_for(body, c, prompt_bound) for c in plan.candidates)
    await hold_reserve(key, generation_id, reserved)
    draft = UsageDraft(
        generation_id=generation_id,
        organization_id=key.organization_id,
        key_id=key.id,
        status="failed",
        requested_model=plan.requested_model,
        router=plan.router,
        router_version=plan.router_version,
        streamed=needs.stream,
        # Only for organizations that opted in: it lets feedback become training data.
        prompt=messages_prompt(body["messages"]) if key.prompt_logging else "",
    )
    ex = Exchange(req, key, body, anthropic, plan, generation_id, prompt_estimate, reserved, draft,
                  prompt_bound=prompt_bound)  # fmt: skip
    await exchange_run(ex, _stream(ex) if needs.stream else _complete(ex))


def generation_id_new() -> str:
    return f"gen-{int(time.time())}-{secrets.token_urlsafe(15)}"


async def hold_reserve(key: AuthenticatedKey, generation_id: str, amount: Decimal) -> None:
    """Hold ``amount`` of the organization's credits (and the key's limit) for one request."""
    await credits_reserve_async(
        ReservationRequest(
            organization_id=key.organization_id,
            generation_id=generation_id,
            amount=amount,
            key_id=key.id,
            key_limit=key.limit,
            key_limit_reset=key.limit_reset,
        )
    )


async def exchange_run(ex: Exchange, work: Coroutine[Any, Any, None]) -> None:
    """Run a held request's upstream work, then count its tokens and settle it, whatever
    happened (every endpoint that holds credits ends here)."""
    draft = ex.draft
    try:
        await _until_disconnect(ex, work)
    except ApiError as error:
        draft.error_type = draft.error_type or error.type
        raise
    finally:
        # The answer's tokens count against the key's tpm before settlement, which may wait
        # for the database: the key's next request must already see them.
        try:
            await rate_limit_add_tokens(
                ex.key, draft.completion_tokens + draft.prompt_tokens - ex.prompt_estimate
            )
        except Exception:
            logger.exception("could not count tokens of %s against the key's tpm",
                             ex.generation_id)  # fmt: skip
        # Exactly once per reservation: success, upstream failure or client disconnect.
        await _settle(draft)


async def _settle(draft: UsageDraft) -> None:
    """Record usage and charge it (releasing the hold): the one place settlement happens. The
    billing outbox makes it durable (Redis list first, settled, then removed; drained if lost)."""
    try:
        await usage_record_async(draft)
    except Exception:
        logger.exception(
            "settlement of %s failed; the reservation sweep will settle its hold",
            draft.generation_id,
        )


async def _until_disconnect(ex: Exchange, work: Coroutine[Any, Any, None]) -> None:
    """Run the upstream exchange, cancelling it (and billing what was generated) if the client goes."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(ex.req.wait_disconnect())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done or ex.req.response_complete:
            # A finished response also reads as a disconnect: that is not the client leaving.
            return await task
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        _bill(ex, _partial_usage(ex), status="aborted", error_type="client_disconnected")
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()


# --- non-streaming ---------------------------------------------------------------------------------


async def _complete(ex: Exchange) -> None:
    for candidate in ex.plan.candidates:
        completion = await _attempt(ex, candidate)
        if completion is None:
            continue
        ex.endpoint, ex.is_byok = candidate.endpoint, candidate.is_byok
        usage = _billable_usage(ex, completion.usage, _choices_chars(completion.choices))
        cost = _bill(ex, usage, status="succeeded")
        response = _response_head(ex, "chat.completion") | {
            "choices": completion.choices,
            "usage": usage.to_openai() | {"cost": float(cost), "is_byok": ex.is_byok},
        }
        body = canonical_to_messages_response(response, usage) if ex.anthropic else response
        await ex.req.respond_json(200, body, headers=_answer_headers(ex))
        _record_success(ex, usage)
        return
    raise _exhausted(ex)


async def _attempt(ex: Exchange, candidate: Candidate) -> Completion | None:
    endpoint, ex.trying_byok = candidate.endpoint, candidate.is_byok
    if _skip(ex, endpoint):
        return None
    adapter = ADAPTERS[endpoint.api_style]
    upstream = adapter.build_request(ex.body, _target(ex, candidate), stream=False)
    try:
        async with asyncio.timeout(settings.GATEWAY_TOTAL_TIMEOUT):
            response = await _client(candidate).post(
                upstream.url,
                content=upstream.content(),
                headers=upstream.headers,
                timeout=upstream_timeout(),
            )
    except (httpx.TimeoutException, TimeoutError):
        _failed(ex, endpoint, "timeout")
        return None
    except httpx.HTTPError as exc:
        _failed(ex, endpoint, "connection_error", str(exc) or type(exc).__name__)
        return None
    ex.first_byte_at = ex.first_byte_at or time.monotonic()
    if response.status_code != 200:
        message = _scrubbed(adapter.error_message(response.content), candidate)
        _rejected(ex, endpoint, response.status_code, message)
        return None
    try:
        completion = adapter.parse_response(orjson.loads(response.content), upstream)
    except (orjson.JSONDecodeError, UpstreamError, KeyError, TypeError, AttributeError) as exc:
        _failed(ex, endpoint, "malformed_response", _scrubbed(str(exc), candidate))
        return None
    if _impossible(completion.usage) and not _choices_answer(completion.choices):
        # Nothing to serve and nothing true to bill: the next candidate, or 502.
        _failed(ex, endpoint, "unusable_response", _UNUSABLE)
        return None
    return completion


# --- streaming -----------------------------------------------------------------------------------------


@dataclass
class _OpenStream:
    response: httpx.Response
    events: AsyncIterator[tuple[str | None, str]]
    decoder: StreamDecoder
    first: list[JSON]


async def _stream(ex: Exchange) -> None:
    for candidate in ex.plan.candidates:
        opened = await _open_stream(ex, candidate)
        if opened is not None:
            await _pump(ex, candidate, opened)
            return
    raise _exhausted(ex)


async def _open_stream(ex: Exchange, candidate: Candidate) -> _OpenStream | None:
    """Connect and read until the first content arrives; any failure so far may fall back."""
    endpoint, ex.trying_byok = candidate.endpoint, candidate.is_byok
    if _skip(ex, endpoint):
        return None
    adapter = ADAPTERS[endpoint.api_style]
    upstream = adapter.build_request(ex.body, _target(ex, candidate), stream=True)
    client = _client(candidate)
    request = client.build_request(
        "POST",
        upstream.url,
        content=upstream.content(),
        headers=upstream.headers,
        timeout=upstream_timeout(),
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.TimeoutException:
        _failed(ex, endpoint, "timeout")
        return None
    except httpx.HTTPError as exc:
        _failed(ex, endpoint, "connection_error", str(exc) or type(exc).__name__)
        return None
    if response.status_code != 200:
        raw = await response.aread()
        await response.aclose()
        _rejected(
            ex, endpoint, response.status_code, _scrubbed(adapter.error_message(raw), candidate)
        )
        return None
    decoder = adapter.stream_decoder(upstream)
    events = sse_events(response.aiter_bytes()).__aiter__()
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
        if not (decoder.finished and _impossible(decoder.usage) and not _deltas_answer(first)):
            ex.first_byte_at = time.monotonic()
            return _OpenStream(response, events, decoder, first)
        error, detail = "unusable_response", _UNUSABLE
    await response.aclose()
    _failed(ex, endpoint, error, _scrubbed(detail, candidate))
    return None


async def _pump(ex: Exchange, candidate: Candidate, opened: _OpenStream) -> None:
    """Relay the rest of the stream; from here on there is no fallback, only an SSE error."""
    ex.endpoint, ex.is_byok, ex.decoder = candidate.endpoint, candidate.is_byok, opened.decoder
    encoder = (
        MessagesStreamEncoder(ex.generation_id, candidate.endpoint.model_id, ex.plan.routing)
        if ex.anthropic
        else None
    )
    await ex.req.start_stream(headers=_answer_headers(ex))
    if encoder is not None:
        await ex.req.write(encoder.start(opened.decoder.usage))
    head = _response_head(ex, "chat.completion.chunk")
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
    if failure is not None:
        if not candidate.is_byok:
            health.health_record_failure(candidate.endpoint.id)
        _bill(ex, _partial_usage(ex), status="failed", error_type="upstream_error_mid_stream")
        message = f"The provider failed mid-stream: {failure or type(failure).__name__}"
        await _stream_error(ex, candidate, encoder, message)
        return
    if not ex.answered and _impossible(opened.decoder.usage):
        # The provider said nothing and counted the impossible: an error, not a bill.
        _bill(ex, Usage(), status="failed", error_type="upstream_unusable_response")
        await _stream_error(ex, candidate, encoder, _UNUSABLE)
        return
    usage = _partial_usage(ex)
    cost = _bill(ex, usage, status="succeeded")
    if encoder is not None:
        await ex.req.write(encoder.finish(usage, float(cost)))
    elif _usage_requested(ex.body):
        tail = head | {
            "choices": [],
            "usage": usage.to_openai() | {"cost": float(cost), "is_byok": ex.is_byok},
        }
        await ex.req.write(b"data: " + orjson.dumps(tail) + b"\n\ndata: [DONE]\n\n")
    else:
        await ex.req.write(b"data: [DONE]\n\n")
    await ex.req.end()
    _record_success(ex, usage)


def _usage_requested(body: JSON) -> bool:
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
    message = _scrubbed(message, candidate)
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
        ex.answered = ex.answered or _deltas_answer([choice])
        ex.generated_chars += len(delta.get("content") or "") + len(delta.get("reasoning") or "")
        for call in delta.get("tool_calls") or []:
            ex.generated_chars += len((call.get("function") or {}).get("arguments") or "")
    if encoder is not None:
        await ex.req.write(b"".join(encoder.chunk(choice) for choice in choices))
    else:
        await ex.req.write(b"data: " + orjson.dumps(head | {"choices": choices}) + b"\n\n")


# --- attempts, failures and billing ------------------------------------------------------------------


def _skip(ex: Exchange, endpoint: EndpointInfo) -> bool:
    if ex.trying_byok:
        return False
    wait = health.breaker_open_for(endpoint.id)
    if wait > 0:
        ex.skipped_for.append(wait)
        return True
    return False


def _failed(ex: Exchange, endpoint: EndpointInfo, error: str, detail: str = "") -> None:
    if not ex.trying_byok:
        health.health_record_failure(endpoint.id)
    ex.attempts.append({"model": endpoint.model_id, "provider": endpoint.provider_slug, "error": error,
                        **({"detail": detail[:300]} if detail else {})})  # fmt: skip
    # Not the provider's message: providers quote the request (prompt text) in errors.
    logger.info("upstream %s/%s failed: %s", endpoint.provider_slug, endpoint.model_id, error)


def _scrubbed(text: str, candidate: Candidate) -> str:
    """A provider's error text without our credential, which some providers quote back."""
    if candidate.api_key and len(candidate.api_key) >= 8:
        return text.replace(candidate.api_key, "[credential]")
    return text


def _rejected(ex: Exchange, endpoint: EndpointInfo, status: int, message: str) -> None:
    if is_retryable_status(status):
        _failed(ex, endpoint, f"status_{status}", message)
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


def _exhausted(ex: Exchange) -> ApiError:
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


def _bill(ex: Exchange, usage: Usage, *, status: str, error_type: str = "") -> Decimal:
    """Fill the usage draft for this outcome and return the cost (0 when nothing was served)."""
    draft = ex.draft
    draft.status, draft.error_type = status, error_type
    draft.latency_ms = int((time.monotonic() - ex.req.started) * 1000)
    if ex.first_byte_at is not None:
        draft.ttft_ms = int((ex.first_byte_at - ex.req.started) * 1000)
    endpoint = ex.endpoint
    if endpoint is None:
        return ZERO
    cost = usage_cost(endpoint.prices, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                      cached_tokens=usage.cached_tokens, is_byok=ex.is_byok)  # fmt: skip
    if cost > ex.reserved:
        # The hold bounds what was sent and asked for; the provider counted more (hidden
        # reasoning, a tenant's own host). The list price is still the charge: settlement takes
        # it as far as the balance goes (never below zero) and flags what it could not take.
        logger.warning(
            "generation %s costs %s, above its hold %s; charged in full (flag over_hold)",
            ex.generation_id, cost, ex.reserved,
        )  # fmt: skip
        draft.flag(UsageFlag.OVER_HOLD)
    draft.model, draft.provider, draft.is_byok, draft.cost = (
        endpoint.model_id,
        endpoint.provider_slug,
        ex.is_byok,
        cost,
    )
    draft.prompt_tokens, draft.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    draft.cached_tokens, draft.reasoning_tokens = usage.cached_tokens, usage.reasoning_tokens
    return cost


def _record_success(ex: Exchange, usage: Usage) -> None:
    if ex.endpoint is None or ex.first_byte_at is None or ex.is_byok:
        return  # an organization's own key or host says nothing of the platform's endpoint
    now = time.monotonic()
    health.health_record_success(ex.endpoint.id, ttft_ms=(ex.first_byte_at - ex.req.started) * 1000,
                                 completion_tokens=usage.completion_tokens, duration_s=now - ex.req.started)  # fmt: skip


def _partial_usage(ex: Exchange) -> Usage:
    """What a stream produced so far: the provider's count when it sent one, else an estimate."""
    reported = ex.decoder.usage if ex.decoder is not None else None
    finished = ex.decoder is not None and ex.decoder.finished
    usage = _billable_usage(ex, reported, ex.generated_chars, finished=finished)
    if ex.endpoint is not None:
        # A stream cut short may carry an early, partial count (Anthropic's message_start).
        usage.completion_tokens = max(
            usage.completion_tokens, _completion_estimate(ex, ex.generated_chars)
        )
    return usage


def _billable_usage(
    ex: Exchange, reported: Usage | None, generated_chars: int, *, finished: bool = True
) -> Usage:
    """The provider's counts, to be billed at list price. A count it did not send, or one that
    cannot be true (``Usage.clamped``, a prompt above its byte bound, no token for a
    finished answer), is estimated from the text instead and the record flagged: never zero
    for a served answer. Estimates stay within the hold's bounds; provider counts need not."""
    if ex.endpoint is None:
        return replace(reported) if reported is not None else Usage()
    estimate = _completion_estimate(ex, generated_chars)
    if reported is None:
        ex.draft.flag(UsageFlag.USAGE_ESTIMATED)
        return Usage(ex.prompt_estimate, estimate)
    usage = replace(reported)
    window = ex.endpoint.context_length
    # A prompt count is impossible only above what the prompt can be: the hold's bound (its UTF-8
    # bytes), or the window when no bound was computed. A count past a catalog window that is
    # stale or too small is still what the provider served, and is billed as reported.
    if max(window, ex.prompt_bound) and usage.prompt_tokens > max(window, ex.prompt_bound):
        usage.prompt_tokens, usage.clamped = 0, True
    if window and usage.completion_tokens > window * int(ex.body.get("n") or 1):
        usage.completion_tokens, usage.clamped = 0, True
    if usage.completion_tokens == 0 and generated_chars and finished:
        usage.clamped = True  # a cut stream's early count may still be 0
    if usage.clamped:
        logger.warning("generation %s: %s reported impossible usage; billed an estimate",
                       ex.generation_id, ex.endpoint.provider_slug)  # fmt: skip
        ex.draft.flag(UsageFlag.USAGE_CLAMPED)
        # One impossible count discredits the report: no count is taken below its estimate.
        usage.prompt_tokens = max(usage.prompt_tokens, ex.prompt_estimate)
        usage.completion_tokens = max(usage.completion_tokens, estimate)
    elif usage.prompt_tokens == 0:
        ex.draft.flag(UsageFlag.USAGE_ESTIMATED)
        usage.prompt_tokens = ex.prompt_estimate
    usage.cached_tokens = min(usage.cached_tokens, usage.prompt_tokens)
    usage.reasoning_tokens = min(usage.reasoning_tokens, usage.completion_tokens)
    return usage


def _completion_estimate(ex: Exchange, generated_chars: int) -> int:
    """≈4 characters a token, never more than the output the provider was asked for."""
    assert ex.endpoint is not None
    return min(_tokens_from_chars(generated_chars), output_token_bound(ex.body, ex.endpoint))


def _impossible(usage: Usage | None) -> bool:
    return usage is not None and usage.clamped


def _choices_answer(choices: list[JSON]) -> bool:
    """Whether a whole answer holds anything to serve: text, reasoning or a tool call."""
    return any(
        text_of((c.get("message") or {}).get("content"))
        or (c.get("message") or {}).get("reasoning")
        or (c.get("message") or {}).get("tool_calls")
        for c in choices
    )


def _deltas_answer(choices: list[JSON]) -> bool:
    """Whether stream chunks hold anything to serve: text, reasoning or a tool call."""
    return any(
        (c.get("delta") or {}).get(name)
        for c in choices
        for name in ("content", "reasoning", "tool_calls")
    )


def _tokens_from_chars(chars: int) -> int:
    return math.ceil(chars / 4)


def _choices_chars(choices: list[JSON]) -> int:
    total = 0
    for choice in choices:
        message = choice.get("message") or {}
        total += len(text_of(message.get("content")))
        total += sum(
            len((c.get("function") or {}).get("arguments") or "")
            for c in message.get("tool_calls") or []
        )
    return total


def _response_head(ex: Exchange, kind: str) -> JSON:
    assert ex.endpoint is not None or kind == "chat.completion.chunk"
    endpoint = ex.endpoint
    head: JSON = {"id": ex.generation_id, "object": kind, "created": int(time.time()),
                  "model": endpoint.model_id if endpoint else "", "provider": endpoint.provider_slug if endpoint else ""}  # fmt: skip
    if ex.attempts:
        head["fallbacks"] = ex.attempts  # which endpoints failed before this one served
    if ex.plan.routing is not None:
        head["routing"] = ex.plan.routing
    return head


def _answer_headers(ex: Exchange) -> dict[str, str]:
    headers = {"x-generation-id": ex.generation_id} | rate_limit_headers(ex.key)
    assert ex.endpoint is not None
    dropped = anthropic_only_fields(ex.body, ex.endpoint.api_style)
    if dropped:
        headers["x-routerhub-dropped"] = ", ".join(dropped)
    return headers


def _client(candidate: Candidate) -> httpx.AsyncClient:
    # A host the tenant chose is called through the client that refuses non-public addresses.
    return tenant_http_client() if candidate.base_url else http_client()


def _target(ex: Exchange, candidate: Candidate) -> Target:
    endpoint = candidate.endpoint
    return Target(base_url=candidate.base_url or endpoint.base_url, upstream_model=endpoint.upstream_model, api_key=candidate.api_key,
                  max_tokens=max_tokens_for(ex.body, endpoint), options=endpoint.options)  # fmt: skip
