"""The gateway's request path, top to bottom: ``POST /v1/chat/completions`` and ``/v1/messages``.

authenticate → parse and validate → plan (which endpoints, in which order) → rate limit →
hold the maximum cost (``metering.hold``) → try candidates until one answers (fallback only
before the first byte reaches the client; ``attempts``) → respond or stream → the real cost is
priced (``exchange.bill`` → ``metering.price``) and recorded exactly once, whatever happened
(success, failure, client disconnect: ``exchange.exchange_run`` → ``metering.record``).
"""

from __future__ import annotations

from accounts.keys import AuthenticatedKey
from billing import metering
from billing.metering import UsageDraft
from routerhub.errors import BadRequest, NotFound
from routing.gateway.allowed_tools import allowed_tools_applied
from routing.gateway.attempts import attempt, deadline_stop, exhausted
from routing.gateway.catalog_cache import catalog_get
from routing.gateway.exchange import (
    Exchange,
    answer_headers,
    authenticate,
    bill,
    exchange_run,
    record_success,
    response_head,
)
from routing.gateway.http import GatewayRequest
from routing.gateway.limits import rate_limit_add_tokens, rate_limit_admit
from routing.gateway.needs import request_needs
from routing.gateway.openrouter_request import model_names_resolved, openrouter_request
from routing.gateway.pipeline import PIPELINE_PREFIX, pipeline_serve
from routing.gateway.planning import model_names, plan_request
from routing.gateway.private_keys import private_keys_dropped
from routing.gateway.request_shape import request_validate
from routing.gateway.streaming import open_stream, pump
from routing.gateway.token_bounds import estimate_prompt_tokens, prompt_token_bound, reservation_max
from routing.gateway.trace import answer_text
from routing.gateway.usage_estimate import billable_usage, completion_chars
from routing.ingress.anthropic import (
    canonical_to_messages_response,
    messages_request_parsed,
    messages_request_to_canonical,
)
from routing.providers.base import JSON, NO_MARKS, IngressMarks
from routing.router_request import models_allowed_check
from routing.routers import messages_prompt

# --- entry points --------------------------------------------------------------------------------


async def chat_completions(req: GatewayRequest) -> None:
    key = await authenticate(req, anthropic=False)
    await chat_serve(req, key, await req.json(), anthropic=False)


async def messages(req: GatewayRequest) -> None:
    key = await authenticate(req, anthropic=True)
    canonical, marks = messages_request_parsed(await req.json())
    await chat_serve(req, key, canonical, anthropic=True, marks=marks)


async def messages_count_tokens(req: GatewayRequest) -> None:
    """``POST /v1/messages/count_tokens``: free, and counted as a request by the rate limiter.
    The count is the gateway's own estimate (``estimate_prompt_tokens``, on the high side), the
    same for every model, which the ``x-routerhub-token-count: estimate`` header says. The model
    must be one the key could call (a router's slug is not looked up: nothing is routed)."""
    key = await authenticate(req, anthropic=True)
    body = await req.json()
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required (a string).", param="model")
    canonical = messages_request_to_canonical(body, counting=True)
    await counted_model_check(key, model)
    await rate_limit_admit(key, 0)
    count = {"input_tokens": estimate_prompt_tokens(canonical)}
    await req.respond_json(200, count, headers={"x-routerhub-token-count": "estimate"})


async def counted_model_check(key: AuthenticatedKey, model: str) -> None:
    """A token count's model, read as a request to it reads it: one the key may call and a
    catalog model (a router's slug is not looked up: nothing is routed), else a 403 or 404."""
    catalog = await catalog_get()
    model = model_names_resolved({"model": model}, catalog)["model"]
    models_allowed_check(key.allowed_models, [("model", model)], model_names)
    if not model.startswith("router/") and model not in catalog.models:
        raise NotFound(f"Unknown model '{model}'; GET /v1/models lists them.", param="model")


# --- the request path ----------------------------------------------------------------------------


async def chat_serve(
    req: GatewayRequest,
    key: AuthenticatedKey,
    body: JSON,
    *,
    anthropic: bool,
    admitted: bool = False,
    marks: IngressMarks = NO_MARKS,
) -> None:
    """Serve one chat request. ``admitted``: the rate limiter already counted the request (its
    caller refuses a key over its limit before costlier work); its prompt tokens are added here.
    ``marks``: what the ingress knows of the messages beyond their shape (``IngressMarks``)."""
    catalog = await catalog_get()
    body = openrouter_request(body, catalog)  # model variants, provider.sort objects, reasoning
    body = allowed_tools_applied(private_keys_dropped(body))
    request_validate(body, parts_counted=marks.parts_counted)
    if str(body.get("model") or "").startswith(PIPELINE_PREFIX):
        await pipeline_serve(req, key, body, anthropic=anthropic, admitted=admitted, marks=marks)
        return
    needs = request_needs(body, marks)
    prompt_bound = prompt_token_bound(body)
    plan = await plan_request(
        body=body, key=key, catalog=catalog, needs=needs, prompt_bound=prompt_bound
    )
    prompt_estimate = estimate_prompt_tokens(body)
    if admitted:  # counted by the caller: only its prompt tokens are still to count
        await rate_limit_add_tokens(key, prompt_estimate)
    else:
        await rate_limit_admit(key, prompt_estimate)
    generation_id = metering.generation_id_new()
    reserved = reservation_max(body, plan.candidates, prompt_bound)
    await metering.hold(key, generation_id, reserved)
    draft = UsageDraft(
        generation_id=generation_id,
        organization_id=key.organization_id,
        key_id=key.id,
        status="failed",
        requested_model=plan.requested_model,
        router=plan.router,
        router_version=plan.router_version,
        router_id=plan.router_id,
        streamed=needs.stream,
        # Only for organizations that opted in: it lets feedback become training data.
        prompt=messages_prompt(body["messages"]) if key.prompt_logging else "",
    )
    ex = Exchange(
        req,
        key,
        body,
        anthropic,
        plan,
        generation_id,
        prompt_estimate,
        reserved,
        draft,
        prompt_bound=prompt_bound,
        marks=marks,
    )
    await exchange_run(ex, _stream(ex) if needs.stream else _complete(ex))


async def _complete(ex: Exchange) -> None:
    for tried, candidate in enumerate(ex.plan.candidates):
        if (late := deadline_stop(ex, tried)) is not None:  # one deadline for every candidate
            raise late
        completion = await attempt(ex, candidate)
        if completion is None:
            continue
        ex.served_by(candidate)
        usage = billable_usage(ex, completion.usage, completion_chars(completion))
        cost = bill(ex, usage, status="succeeded")
        response = response_head(ex, "chat.completion") | {
            "choices": completion.choices,
            "usage": usage.to_openai() | {"cost": float(cost), "is_byok": ex.is_byok},
        }
        if completion.service_tier:  # the tier served, as OpenAI says it
            response["service_tier"] = completion.service_tier
        body = canonical_to_messages_response(response, usage) if ex.anthropic else response
        if ex.key.prompt_logging:
            ex.answer_parts.append(answer_text(completion.choices))
        await ex.req.respond_json(200, body, headers=answer_headers(ex))
        record_success(ex, usage)
        return
    raise exhausted(ex)


async def _stream(ex: Exchange) -> None:
    for tried, candidate in enumerate(ex.plan.candidates):
        if (late := deadline_stop(ex, tried)) is not None:
            raise late
        opened = await open_stream(ex, candidate)
        if opened is not None:
            await pump(ex, candidate, opened)
            return
    raise exhausted(ex)
