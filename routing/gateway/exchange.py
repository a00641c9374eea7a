"""A held request's life, shared by every gateway endpoint that holds credits (chat, messages,
completions, responses, embeddings): who is asking, what it accumulates on its way, and how it
ends — ``exchange_run`` runs the upstream work and then, whatever happened, counts its tokens
and hands its draft to billing exactly once (``billing.metering.record``). ``bill`` fills that
draft for an outcome; the charge itself is ``billing.metering.price``'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from accounts.keys import AuthenticatedKey, bearer_token, key_authenticate_async
from billing import metering
from billing.metering import UsageDraft, UsageFlag
from routerhub.errors import ApiError, Forbidden, Unauthorized
from routerhub.money import ZERO
from routing.gateway import health
from routing.gateway.catalog_cache import EndpointInfo
from routing.gateway.http import GatewayRequest, InFlight
from routing.gateway.limits import rate_limit_add_tokens, rate_limit_headers
from routing.gateway.planning import Candidate, Plan
from routing.gateway.timeouts import TimedOut, timeouts_charge
from routing.gateway.trace import MAX_RESPONSE_CHARS, trace_json
from routing.gateway.usage_estimate import partial_usage
from routing.ingress.anthropic import anthropic_only_fields
from routing.providers.base import (
    JSON,
    NO_MARKS,
    STANDARD_TIERS_SERVED,
    IngressMarks,
    StreamDecoder,
    Usage,
    fields_not_sent,
)
from routing.providers.cache_marks import has_marks
from routing.router_policy import decision_log_entry

logger = logging.getLogger(__name__)

UNUSABLE = "the provider returned no answer and token counts that cannot be true"


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
    # A pipeline's call stopped by the request's deadline (``attempts.deadline_stop``) before
    # some candidate; on the request, the first step so stopped, named ("Step 2 (test/strong)",
    # counted from 1) for ``pipeline_steps.all_failed``.
    deadline_stopped: bool = False
    stopped_step: str | None = None
    endpoint: EndpointInfo | None = None
    is_byok: bool = False
    # The organization's own host (a key with a ``base_url``) counts its own tokens, on which the
    # fee is taken: they are billed no lower than their estimates (``billable_usage``).
    own_host: bool = False
    decoder: StreamDecoder | None = None
    generated_chars: int = 0
    answered: bool = False  # a stream relayed content, reasoning or a tool call
    # The candidate being tried is the organization's own key (or host): its failures are its
    # own and neither open nor consult the circuit breaker every organization shares.
    trying_byok: bool = False
    finish_reason_seen: bool = False
    # prompt_token_bound(body): the most tokens the prompt can be (0 where none was computed).
    prompt_bound: int = 0
    # What the ingress knows of ``body``'s messages beyond their shape (a failed tool result, a
    # tool's screenshot): beside them, never in them, so no key a client sends can pose as one.
    marks: IngressMarks = NO_MARKS
    first_byte_at: float | None = None
    answer_parts: list[str] = field(default_factory=list)  # kept only with prompt logging
    # More fields for a stream's usage chunk (a pipeline step streamed live adds ``pipeline``).
    stream_tail: Callable[[], JSON] | None = None
    # The candidate whose provider has this call's request and has not answered yet (set by
    # ``sent_trace`` once the request is written, not while connecting or waiting for a
    # pooled connection; a refusal or failed attempt clears it): what a call stopped by its
    # caller is billed at (``call_abandoned``).
    sending: Candidate | None = None
    sent_at: float | None = None  # when ``sending`` was set: ``_hidden_reasoning`` counts from it
    # Set by ``bill``: the outcome is priced (a client leaving after that changes nothing).
    billed: bool = False
    # Of the draft's cache writes, those for an hour (the draft keeps only the total): what an
    # Anthropic answer shows apart; a pipeline's request sums its calls'.
    cache_write_1h_tokens: int = 0
    # A pipeline's calls: each registers here how to account for it if the client leaves first
    # (``pipeline_steps.child_exchange``); ``accounted`` once it is one of the request's steps.
    on_abandon: list[Callable[[], None]] = field(default_factory=list)
    accounted: bool = False
    # Attempts that timed out after their request was written (``attempts.timed_out``): the
    # provider bills their prompts, so each is charged its prompt estimate (``timeouts_charge``).
    # Shared by a request's per-prompt exchanges (``dataclasses.replace`` keeps the list).
    timed_out: list[TimedOut] = field(default_factory=list)
    # Why the work was cancelled, once it is (``_until_disconnect``): the record's error_type.
    cancelled_by: str = "client_disconnected"
    # The prompt tokens ``rate_limit_admit`` counted against the key's tpm: what the tokens
    # counted once it ends correct. Its own field: a list of prompts stopped midway lowers
    # ``prompt_estimate`` to the prompts a provider still had (``_prompts_sent``), and the
    # correction then counted the others twice.
    admitted_tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.admitted_tokens = self.prompt_estimate

    def served_by(self, candidate: Candidate) -> None:
        """``candidate`` is the one this call is billed at: its endpoint, whether the key is the
        organization's own, and whether the host is (``own_host``: billed no lower than the
        estimates), set together so no path bills an own host's counts unfloored."""
        self.endpoint, self.is_byok = candidate.endpoint, candidate.is_byok
        self.own_host = bool(candidate.base_url)


# A scope entry only this server's own code can set (never a header): the key a dashboard
# session's playground request acts with (``routing.playground``).
SESSION_KEY_SCOPE = "routerhub.session_key"


async def authenticate(req: GatewayRequest, *, anthropic: bool) -> AuthenticatedKey:
    preset = req.scope.get(SESSION_KEY_SCOPE)
    if isinstance(preset, AuthenticatedKey) and not preset.is_management:
        return preset
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
        timeouts_charge(ex)  # when no outcome was billed (every candidate failed)
        # The answer's tokens count against the key's tpm before settlement, which may wait
        # for the database: the key's next request must already see them.
        try:
            await rate_limit_add_tokens(
                ex.key, draft.completion_tokens + draft.prompt_tokens - ex.admitted_tokens
            )
        except Exception:
            logger.exception("could not count tokens of %s against the key's tpm", ex.generation_id)
        draft.trace = trace_json(ex.plan.routing, ex.attempts)
        # After the answer went out: this is where a shadow version decides (router_policy).
        draft.decision = decision_log_entry(ex.plan.decision, draft.model)
        if ex.answer_parts:
            draft.response = "".join(ex.answer_parts)[:MAX_RESPONSE_CHARS]
        # Exactly once per reservation: success, upstream failure or client disconnect. Alone
        # in this process (c=1), the draft is written now, done before the client's next
        # request comes; with others in flight it waits a few ms to share their write.
        await metering.record(draft, alone=InFlight.count <= 1)


async def _until_disconnect(ex: Exchange, work: Coroutine[Any, Any, None]) -> None:
    """Run the upstream exchange, cancelling it (and billing what was generated, and the prompt
    a provider still has) if the client goes — or if this handler is cancelled (the server
    shutting down, a deadline of its own): the provider bills that prompt all the same."""
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
        _abandoned(ex)
    finally:
        watcher.cancel()
        if not task.done():  # this handler was cancelled: the work says what it got, then ends
            ex.cancelled_by = "server_cancelled"
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):  # this cancellation goes on
                await task
            _abandoned(ex)


def _abandoned(ex: Exchange) -> None:
    """The work was stopped before its outcome was billed (``ex.cancelled_by`` says who stopped
    it): bill what it got — a pipeline's calls, the answers that came, what a stream generated —
    and the prompt a provider still had (``call_abandoned``), whoever stopped it. Before, a
    handler the server cancelled (its shutdown) billed none of it: the provider still did."""
    for account in ex.on_abandon:  # a pipeline's calls: answers that came, calls in flight
        account()
    if not ex.billed:  # billed already: the client left during the answer's last write
        call_abandoned(ex)
        bill(ex, partial_usage(ex), status="aborted", error_type=ex.cancelled_by)


def call_abandoned(ex: Exchange) -> None:
    """A call its caller stopped (the client left, a pipeline's own timeout or aggregate) while
    a provider had its request and no answer had come: the provider bills that prompt, so the
    call is priced at that endpoint too — its prompt, estimated and flagged, as a stream cut short
    is billed what it generated. Before, it was billed nothing and the platform paid the provider
    for prompts sent as often as a client liked. An attempt that failed is never billed."""
    if ex.endpoint is None and ex.sending is not None:
        ex.served_by(ex.sending)


def sent_trace(ex: Exchange, candidate: Candidate) -> dict[str, Any]:
    """httpx's ``trace`` request extension: ``ex.sending`` is set once the request has been
    written to the provider's connection — not while connecting, in a TLS handshake or waiting
    for a pooled connection, when the provider has nothing to bill — and cleared when its answer
    is not a 200 (the provider refused it: nothing is billed, even while its error trickles in).
    A cancellation leaves it set (``call_abandoned``); ``failed`` clears it, as does the
    transport's ``send_request_body.failed`` when a reused connection proves dead. Through an
    HTTPS proxy httpcore sends its ``CONNECT`` with the request's extensions, so this trace hears
    the tunnel's own events too: httpcore names the request only in a step's ``.started`` event
    (``info["request"]``), so the steps of a ``CONNECT`` are ignored up to their end."""
    ex.sending = None  # a previous candidate's request is not this one's
    tunnel = False  # the step under way belongs to the proxy's CONNECT, not to the provider

    async def trace(event: str, info: dict[str, Any]) -> None:
        nonlocal tunnel
        if "request" in info:
            tunnel = getattr(info["request"], "method", None) == b"CONNECT"
        if tunnel:
            return
        if event.endswith(".send_request_body.complete"):
            ex.sending, ex.sent_at = candidate, time.monotonic()
        elif event.endswith(".send_request_body.failed"):
            ex.sending = None  # a dead kept-alive connection: sent again once one is free
        elif event.endswith(".receive_response_headers.complete"):
            # httpcore: (version, status, reason, headers) on HTTP/1.1, (status, headers) on h2.
            head = info.get("return_value") or ()
            if next((v for v in head if isinstance(v, int)), 200) != 200:
                ex.sending = None

    return {"trace": trace}


def bill(ex: Exchange, usage: Usage, *, status: str, error_type: str = "") -> Decimal:
    """Fill the usage draft for this outcome and return the cost (0 when nothing was served);
    what it costs is ``metering.price``'s to say."""
    draft = ex.draft
    ex.billed = True
    draft.status, draft.error_type = status, error_type
    draft.latency_ms = int((time.monotonic() - ex.req.started) * 1000)
    if ex.first_byte_at is not None:
        draft.ttft_ms = int((ex.first_byte_at - ex.req.started) * 1000)
    endpoint = ex.endpoint
    if endpoint is None:
        return ZERO
    draft.model, draft.provider = endpoint.model_id, endpoint.provider_slug
    cost = metering.price(
        draft, endpoint.prices, usage, is_byok=ex.is_byok, held=ex.reserved, own_host=ex.own_host
    )
    if not ex.is_byok and usage.service_tier not in STANDARD_TIERS_SERVED:
        logger.warning(
            "generation %s was served at tier %r, which the catalog does not price; billed the "
            "standard price (flag unpriced_tier)",
            ex.generation_id,
            usage.service_tier,
        )
        draft.flag(UsageFlag.UNPRICED_TIER)
    ex.cache_write_1h_tokens = usage.cache_write_1h_tokens
    return cost + timeouts_charge(ex)


def record_success(ex: Exchange, usage: Usage) -> None:
    if ex.endpoint is None or ex.first_byte_at is None or ex.is_byok:
        return  # an organization's own key or host says nothing of the platform's endpoint
    now = time.monotonic()
    health.health_record_success(
        ex.endpoint.id,
        ttft_ms=(ex.first_byte_at - ex.req.started) * 1000,
        completion_tokens=usage.completion_tokens,
        duration_s=now - ex.req.started,
    )


def response_head(ex: Exchange, kind: str) -> JSON:
    assert ex.endpoint is not None or kind == "chat.completion.chunk"
    endpoint = ex.endpoint
    head: JSON = {
        "id": ex.generation_id,
        "object": kind,
        "created": int(time.time()),
        "model": endpoint.model_id if endpoint else "",
        "provider": endpoint.provider_slug if endpoint else "",
    }
    if ex.attempts:
        head["fallbacks"] = ex.attempts  # which endpoints failed before this one served
    if ex.plan.routing is not None:
        head["routing"] = ex.plan.routing
    return head


def answer_headers(ex: Exchange) -> dict[str, str]:
    headers = {"x-generation-id": ex.generation_id} | rate_limit_headers(ex.key)
    assert ex.endpoint is not None
    dropped = anthropic_only_fields(ex.body, ex.endpoint.api_style)
    dropped += fields_not_sent(ex.body, ex.endpoint.api_style, ex.is_byok)
    if ex.endpoint.api_style != "anthropic" and has_marks(ex.body):
        dropped.append("cache_control")  # no explicit prompt caching there (README)
    hint = (ex.plan.routing or {}).get("task_hint")
    if hint is not None and hint["applied"] is None:
        dropped.append("router.task")  # the version has no hint for it: decided without (README)
    if dropped:
        headers["x-routerhub-dropped"] = ", ".join(dropped)
    return headers
