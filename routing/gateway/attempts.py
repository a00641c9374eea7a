"""Trying candidates: one whole-answer attempt at one endpoint, and the bookkeeping of every
attempt's failure (a stream's attempt, which uses the same bookkeeping, is ``streaming``'s).

Every failure before the first byte reaches the client is recorded on the exchange
(``failed``; the circuit breaker hears of platform endpoints' failures) and lets the caller try
the next candidate; ``exhausted`` is the error when none answered.

A request has one deadline, ``GATEWAY_TOTAL_TIMEOUT`` from its start, across every candidate
(and every prompt of a list, every step of a pipeline): each call ends by it (``deadline_left``)
and no call is started with under ``CALL_MIN_SECONDS`` of it left (``deadline_stop``). Before,
a chat request, embeddings and a pipeline step gave each candidate a whole timeout of its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import httpx
import orjson
from django.conf import settings

from routerhub.errors import (
    ApiError,
    BadRequest,
    NoProviderAvailable,
    RateLimited,
    UpstreamFailed,
    UpstreamTimeout,
)
from routing.egress import tenant_http_client
from routing.gateway import health
from routing.gateway.catalog_cache import EndpointInfo
from routing.gateway.exchange import UNUSABLE, Exchange, sent_trace
from routing.gateway.needs import readable_body
from routing.gateway.planning import Candidate
from routing.gateway.timeouts import TimedOut
from routing.gateway.token_bounds import max_tokens_for
from routing.gateway.upstream import (
    http_client,
    is_retryable_status,
    upstream_timeout,
    upstream_url,
)
from routing.gateway.usage_estimate import impossible, timed_out_usage
from routing.providers import ADAPTERS
from routing.providers.answer_checks import has_answer
from routing.providers.base import (
    JSON,
    Completion,
    Target,
    UpstreamError,
    UpstreamRequest,
)
from routing.providers.cache_marks import marks_strip
from routing.tenant_slots import ORGANIZATION, REFUSED, TenantLimitReached

logger = logging.getLogger(__name__)
ERROR_BODY_BYTES = 64 * 1024  # of a provider's error answer: its message is near the start
TENANT_LIMIT = "tenant_connection_limit"  # an attempt's error: GATEWAY_TENANT_MAX_CONNECTIONS


def skip(ex: Exchange, endpoint: EndpointInfo) -> bool:
    if ex.trying_byok:
        return False
    wait = health.breaker_open_for(endpoint.id)
    if wait > 0:
        ex.skipped_for.append(wait)
        return True
    return False


def failed(ex: Exchange, endpoint: EndpointInfo, error: str, detail: str = "") -> None:
    ex.sending = None  # the provider's failure: not billed (a sent timeout: ``timed_out``)
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
    deadline) or could not connect, or its organization's own hosts were at their limit."""
    if isinstance(exc, TenantLimitReached):  # nothing sent; another candidate may answer
        failed(ex, endpoint, TENANT_LIMIT, str(exc))
    elif isinstance(exc, httpx.TimeoutException | TimeoutError):
        timed_out(ex, endpoint)
    elif isinstance(exc, httpx.DecodingError):  # past the size bound, or an encoding refused
        failed(ex, endpoint, "malformed_response", str(exc))
    else:
        failed(ex, endpoint, "connection_error", str(exc) or type(exc).__name__)


def timed_out(ex: Exchange, endpoint: EndpointInfo) -> None:
    """A failed attempt that timed out. If the provider had the whole request by then
    (``ex.sending``), it bills that prompt though it never answered: the attempt is charged its
    prompt, estimated (and a ``hidden_reasoning`` model's reasoning for its time,
    ``timed_out_usage``), at its endpoint (``exchange.timeouts_charge``), as a call abandoned while
    the provider had it is. A timeout before the request was written (connecting, in the TLS
    handshake, waiting for a pooled connection) is free, as every other failed attempt."""
    sent = ex.sending if ex.sending is not None and ex.sending.endpoint is endpoint else None
    failed(ex, endpoint, "timeout")
    if sent is not None:
        ex.timed_out.append(TimedOut(ex.attempts[-1], sent, timed_out_usage(ex, endpoint)))


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
    if all(attempt["error"] == TENANT_LIMIT for attempt in ex.attempts):
        # The organization's own concurrency to its own hosts, not a provider's fault: a 429.
        return RateLimited(
            ex.attempts[0]["detail"],
            metadata=metadata,
            headers={"Retry-After": "1"},
        )
    if all(attempt["error"] == "timeout" for attempt in ex.attempts):
        return UpstreamTimeout("The provider did not answer in time.", metadata=metadata)
    tried = ", ".join(f"{a['provider']} ({a['error']})" for a in ex.attempts)
    return UpstreamFailed(f"Every provider failed: {tried}.", metadata=metadata)


# A call needs this much of the request's deadline left to be started (no provider answers in
# less, and a call started then would only be billed its prompt when it times out).
CALL_MIN_SECONDS = 0.5


def deadline_passed() -> str:
    """Why a call was not started (read when said: tests change ``CALL_MIN_SECONDS``)."""
    return (
        f"the request's deadline (GATEWAY_TOTAL_TIMEOUT, {settings.GATEWAY_TOTAL_TIMEOUT:g} s)"
        f" had passed (or was under {CALL_MIN_SECONDS:g} s away)"
    )


def deadline_left(ex: Exchange) -> float:
    """Seconds left of the request's deadline (``GATEWAY_TOTAL_TIMEOUT`` from its arrival; a
    pipeline's calls share their request's), possibly negative."""
    return ex.req.started + float(settings.GATEWAY_TOTAL_TIMEOUT) - time.monotonic()


def deadline_stop(ex: Exchange, tried: int) -> ApiError | None:
    """The error ending the request before its candidate ``tried`` (counted from 0) when the
    deadline leaves under ``CALL_MIN_SECONDS``; None when that call may start. The error is
    ``exhausted``'s, saying how many candidates were not tried (a 503 with ``Retry-After`` when
    every one before was paused by its circuit breaker: those were not tried either), or, none
    having been tried nor paused, a 408 saying the deadline passed."""
    if deadline_left(ex) >= CALL_MIN_SECONDS:
        return None
    untried = len(ex.plan.candidates) - tried
    if not ex.attempts and not ex.skipped_for:
        metadata = {"attempts": ex.attempts, "generation_id": ex.generation_id}
        return UpstreamTimeout(f"No provider was tried: {deadline_passed()}.", metadata=metadata)
    error = exhausted(ex)
    others = "1 more provider was" if untried == 1 else f"{untried} more providers were"
    error.message += f" {others} not tried: {deadline_passed()}."
    return error


def client_for(candidate: Candidate) -> httpx.AsyncClient:
    # A host the tenant chose is called through the client that refuses non-public addresses.
    return tenant_http_client() if candidate.base_url else http_client()


def request_extensions(ex: Exchange, candidate: Candidate) -> dict[str, object]:
    """The upstream request's extensions: the billing trace (``sent_trace``) and, for a host the
    organization chose, whose request it is (``tenant_slots``: its share of the pool) and, once
    this request was refused a slot, the refusal (the candidate is refused at once, no new wait)."""
    extensions = sent_trace(ex, candidate)
    if candidate.base_url:
        extensions[ORGANIZATION] = ex.key.organization_id
        refusal = next((a for a in ex.attempts if a["error"] == TENANT_LIMIT), None)
        if refusal is not None:
            extensions[REFUSED] = refusal["detail"]
    return extensions


# Options that describe the provider's own host, not its wire: an organization's own host on that
# provider (a vLLM behind ``base_url``) gets a refusal as text, as any other OpenAI-style host.
_HOST_OPTIONS = frozenset({"takes_refusals"})


def _target(ex: Exchange, candidate: Candidate) -> Target:
    endpoint = candidate.endpoint
    options = endpoint.options
    if candidate.base_url and not _HOST_OPTIONS.isdisjoint(options):
        options = {name: value for name, value in options.items() if name not in _HOST_OPTIONS}
    return Target(
        base_url=candidate.base_url or endpoint.base_url,
        upstream_model=endpoint.upstream_model,
        api_key=candidate.api_key,
        max_tokens=max_tokens_for(ex.body, endpoint),
        options=options,
        failed_tools=ex.marks.failed_tools,
        own_key=candidate.is_byok,
    )


def upstream_request(ex: Exchange, candidate: Candidate, *, stream: bool) -> UpstreamRequest:
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
    """One whole answer from ``candidate``, or None when it failed (recorded on ``ex``). The call
    ends by the request's deadline (``deadline_left``): a timeout, billed its prompt if sent."""
    endpoint, ex.trying_byok = candidate.endpoint, candidate.is_byok
    if skip(ex, endpoint):
        return None
    adapter = ADAPTERS[endpoint.api_style]
    upstream = upstream_request(ex, candidate, stream=False)
    try:
        async with asyncio.timeout(deadline_left(ex)):
            response = await client_for(candidate).post(
                upstream_url(upstream.url),
                content=upstream.content(),
                headers=upstream.headers,
                timeout=upstream_timeout(),
                extensions=request_extensions(ex, candidate),
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
    """Whether a whole answer holds anything to serve: text, reasoning, a refusal or a tool
    call."""
    return any(has_answer(c.get("message") or {}) for c in choices)
