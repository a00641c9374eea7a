"""``POST /v1/embeddings``: OpenAI's embeddings API over the catalog's embedding models.

The chat request's life (``routing.gateway.chat``) with an embedding body: authenticate →
validate → plan (embedding models only, fallbacks from ``models`` and other providers) → rate
limit → hold the most the inputs can cost (every UTF-8 byte a token) → try candidates until one
answers → bill the provider's prompt tokens (an estimate, flagged, when it reports none, as
Gemini's batch API does) → settle exactly once. Vectors travel as floats; ``base64`` (what the
openai SDK asks for by default) is little-endian float32, encoded here.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import struct
import time
from dataclasses import dataclass, replace
from decimal import Decimal

import httpx
import orjson
from django.conf import settings

from billing import metering
from billing.metering import UsageDraft, UsageFlag, reservation_amount
from routerhub.errors import NOT_RETRYABLE, BadRequest, NoProviderAvailable
from routing.gateway.attempts import (
    client_for,
    deadline_left,
    deadline_stop,
    exhausted,
    failed,
    rejected,
    request_extensions,
    scrubbed,
    skip,
    transport_failed,
)
from routing.gateway.catalog_cache import catalog_get
from routing.gateway.exchange import (
    Exchange,
    authenticate,
    bill,
    exchange_run,
    record_success,
)
from routing.gateway.http import GatewayRequest
from routing.gateway.limits import rate_limit_admit
from routing.gateway.needs import Needs
from routing.gateway.openrouter_request import model_names_resolved
from routing.gateway.planning import Candidate, plan_request
from routing.gateway.request_shape import service_tier_validate
from routing.gateway.upstream import upstream_timeout, upstream_url
from routing.gateway.usage_estimate import own_host_floor
from routing.providers import ADAPTERS
from routing.providers.base import JSON, Target, UpstreamError, Usage
from routing.providers.embeddings import EMBEDDING_STYLES, embedding_request, embedding_response
from training.serving import billed_tokens

MAX_INPUTS = 2048  # OpenAI's bound on input items per request
MAX_INPUT_TOKENS = 300_000  # OpenAI's bound on the tokens of one request, for token arrays
_MAX_DIMENSIONS = 65_536
logger = logging.getLogger(__name__)
_ENCODINGS = ("float", "base64")
_NEEDS = Needs(
    tools=False, vision=False, json_schema=False, json_object=False, stream=False, embeddings=True
)
_INPUT_SHAPE = "input must be a string, a list of strings, a token array or a list of token arrays."


@dataclass(frozen=True)
class EmbeddingInput:
    """A validated request: its inputs (all strings or all token arrays) and options."""

    inputs: list[str] | list[list[int]]
    tokens: bool
    encoding: str
    dimensions: int | None
    user: str | None

    def token_bound(self) -> int:
        """The most prompt tokens the inputs can count as: a byte-level tokenizer never makes
        more tokens than the UTF-8 bytes it reads; a token array is its own count."""
        if self.tokens:
            return sum(len(item) for item in self.inputs)
        return sum(len(str(text).encode()) for text in self.inputs)

    def estimate(self) -> int:
        """Central, by script (as chat's estimate, ``billed_tokens``), within the bound: what the
        rate limiter admits on and what is billed when the provider reports no count."""
        if self.tokens:
            return self.token_bound()
        central = sum(math.ceil(billed_tokens(str(text))) for text in self.inputs)
        return min(central, self.token_bound())


def _token_array(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)
    )


def embedding_input_parse(body: JSON) -> EmbeddingInput:
    """The request's inputs and options, or a 400 naming the field."""
    raw = body.get("input")
    if raw is None:
        raise BadRequest("input is required: a string or a list of strings.", param="input")
    if isinstance(raw, str) or _token_array(raw):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise BadRequest(_INPUT_SHAPE, param="input")
    if len(raw) > MAX_INPUTS:
        raise BadRequest(
            f"input has {len(raw)} items; at most {MAX_INPUTS} per request.", param="input"
        )
    tokens = not isinstance(raw[0], str)
    for index, item in enumerate(raw):
        if tokens and not _token_array(item):
            raise BadRequest(f"input[{index}]: {_INPUT_SHAPE}", param="input")
        if not tokens and not isinstance(item, str):
            raise BadRequest(f"input[{index}]: {_INPUT_SHAPE}", param="input")
        if not tokens and not item:
            raise BadRequest(f"input[{index}] is an empty string; embed some text.", param="input")
    request = EmbeddingInput(raw, tokens, *_options(body))
    if tokens and request.token_bound() > MAX_INPUT_TOKENS:
        raise BadRequest(
            f"input holds {request.token_bound()} tokens; at most {MAX_INPUT_TOKENS} per request.",
            param="input",
        )
    return request


def _options(body: JSON) -> tuple[str, int | None, str | None]:
    encoding = body.get("encoding_format") or "float"
    if encoding not in _ENCODINGS:
        raise BadRequest("encoding_format must be 'float' or 'base64'.", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= _MAX_DIMENSIONS
    ):
        raise BadRequest(
            f"dimensions must be an integer from 1 to {_MAX_DIMENSIONS}.", param="dimensions"
        )
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise BadRequest("user must be a string.", param="user")
    return encoding, dimensions, user


def _servable(candidate: Candidate, request: EmbeddingInput) -> bool:
    style = candidate.endpoint.api_style
    return style in EMBEDDING_STYLES and (style == "openai" or not request.tokens)


# --- the request path ----------------------------------------------------------------------------


async def embeddings(req: GatewayRequest) -> None:
    key = await authenticate(req, anthropic=False)
    body = await req.json()
    request = embedding_input_parse(body)
    service_tier_validate(body)  # a standard tier only on the platform's keys (planning)
    catalog = await catalog_get()
    body = model_names_resolved(body, catalog)  # OpenAI's own names: text-embedding-3-small
    if str(body.get("model") or "").startswith("router/"):
        raise BadRequest("Routers choose chat models; name an embedding model.", param="model")
    # An embedding model's context window bounds each input, not the request: no window check
    # across inputs (prompt_bound 0); a too-long input is the provider's 400.
    plan = await plan_request(body=body, key=key, catalog=catalog, needs=_NEEDS, prompt_bound=0)
    plan = replace(plan, candidates=[c for c in plan.candidates if _servable(c, request)])
    if not plan.candidates and request.tokens:
        raise BadRequest(
            "input as token arrays needs an OpenAI-compatible provider; send text instead.",
            param="input",
        )
    if not plan.candidates:
        # Permanent until the catalog changes: no Retry-After, and SDKs told not to retry.
        raise NoProviderAvailable(
            "No provider of this model speaks an embeddings API.", headers=dict(NOT_RETRYABLE)
        )
    prompt_estimate = request.estimate()
    await rate_limit_admit(key, prompt_estimate)
    generation_id = metering.generation_id_new()
    bound = request.token_bound()
    reserved = max(_hold(c, bound) for c in plan.candidates)
    await metering.hold(key, generation_id, reserved)
    draft = UsageDraft(
        generation_id=generation_id,
        organization_id=key.organization_id,
        key_id=key.id,
        status="failed",
        requested_model=plan.requested_model,
    )
    ex = Exchange(req, key, body, False, plan, generation_id, prompt_estimate, reserved, draft)
    await exchange_run(ex, _embed(ex, request))


def _hold(candidate: Candidate, prompt_tokens: int) -> Decimal:
    amount = reservation_amount(
        candidate.endpoint.prices, prompt_tokens=prompt_tokens, max_output_tokens=0
    )
    return amount * settings.BYOK_FEE_RATE if candidate.is_byok else amount


async def _embed(ex: Exchange, request: EmbeddingInput) -> None:
    for tried, candidate in enumerate(ex.plan.candidates):
        if (late := deadline_stop(ex, tried)) is not None:  # one deadline for every candidate
            raise late
        vectors = await _attempt(ex, candidate, request)
        if vectors is None:
            continue
        ex.served_by(candidate)
        usage = _billable_usage(ex, vectors[1], request)
        cost = bill(ex, usage, status="succeeded")
        body: JSON = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _encoded(v, request.encoding)}
                for i, v in enumerate(vectors[0])
            ],
            "model": candidate.endpoint.model_id,
            "id": ex.generation_id,
            "provider": candidate.endpoint.provider_slug,
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "total_tokens": usage.prompt_tokens,
                "cost": float(cost),
                "is_byok": ex.is_byok,
            },
        }
        if ex.attempts:
            body["fallbacks"] = ex.attempts
        headers = {"x-generation-id": ex.generation_id}
        if ex.body.get("service_tier") is not None:  # no embeddings API takes a tier
            headers["x-routerhub-dropped"] = "service_tier"
        await ex.req.respond_json(200, body, headers=headers)
        record_success(ex, usage)
        return
    raise exhausted(ex)


async def _attempt(
    ex: Exchange, candidate: Candidate, request: EmbeddingInput
) -> tuple[list[list[float]], Usage | None] | None:
    endpoint, ex.trying_byok = candidate.endpoint, candidate.is_byok
    if skip(ex, endpoint):
        return None
    target = Target(
        base_url=candidate.base_url or endpoint.base_url,
        upstream_model=endpoint.upstream_model,
        api_key=candidate.api_key,
        max_tokens=0,
        options=endpoint.options,
    )
    upstream = embedding_request(
        endpoint.api_style, request.inputs, target, request.dimensions, request.user
    )
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
        message = ADAPTERS[endpoint.api_style].error_message(response.content)
        rejected(ex, endpoint, response.status_code, scrubbed(message, candidate))
        return None
    try:
        return embedding_response(
            endpoint.api_style, orjson.loads(response.content), len(request.inputs)
        )
    except (orjson.JSONDecodeError, UpstreamError) as exc:
        failed(ex, endpoint, "malformed_response", scrubbed(str(exc), candidate))
        return None


def _billable_usage(ex: Exchange, reported: Usage | None, request: EmbeddingInput) -> Usage:
    """The provider's prompt count; the estimate (flagged) when it sent none or one that cannot
    be true (impossible values, more tokens than token arrays hold); an own host's count no
    lower than the estimate (``own_host_floor``), as on chat."""
    if reported is None or reported.prompt_tokens == 0:
        ex.draft.flag(UsageFlag.USAGE_ESTIMATED)
        return Usage(prompt_tokens=ex.prompt_estimate)
    if reported.clamped:
        ex.draft.flag(UsageFlag.USAGE_CLAMPED)
        return Usage(prompt_tokens=ex.prompt_estimate)
    if request.tokens and reported.prompt_tokens > request.token_bound():
        ex.draft.flag(UsageFlag.USAGE_CLAMPED)
        return Usage(prompt_tokens=request.token_bound())
    usage = Usage(prompt_tokens=reported.prompt_tokens)
    own_host_floor(ex, usage, ex.prompt_estimate, 0)
    return usage


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
