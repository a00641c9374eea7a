"""Serving ``model: "pipeline/<slug>"`` on ``POST /v1/chat/completions``, ``/v1/messages`` and
``/v1/responses`` (all arrive here through ``chat.chat_serve``).

One request, several provider calls, billed as ``billing.metering`` describes: every call is
planned before anything is sent (``pipeline_plan``: the steps, a judge gate's judge, a parallel
pipeline's judge or synthesiser), the request holds ONCE the sum of their worst cases, each
call is priced on a child draft of its own (``pipeline_steps``), and the request's draft carries
the calls as ``steps`` (``UsageStep`` child records) and their total as its cost — the one
charge.

- **cascade**: call the steps in order; stop at the first answer that passes its step's gate
  (``pipeline_steps.post_gate``); a step whose providers all fail escalates too. When no answer
  passes, the last answer is served with ``pipeline.passed: false``. A step's pre-call gate
  asks the organization's trained router for the step model's predicted score on this prompt
  and skips the step (no call, no cost) below ``min_score``; a router that cannot score it
  (untrained, model not among its candidates) leaves the step to be called.
- **series**: each step's prompt is its template with ``{input}`` (the request's last user
  message) and ``{previous}`` (the previous step's answer); the last answer is served and
  ``pipeline.steps[].output`` holds every step's.
- **parallel**: ``pipeline_parallel``.

``stream: true``: ``pipeline_stream`` (a cascade's ungated first call streams live; the rest
is buffered, then sent as a stream).
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial

from accounts.keys import AuthenticatedKey
from billing import metering
from billing.metering import UsageDraft
from routerhub.errors import ApiError, BadRequest, InsufficientCredits, NotFound
from routerhub.money import ZERO, money_str
from routing.gateway.catalog_cache import catalog_get
from routing.gateway.exchange import Exchange, bill, exchange_run
from routing.gateway.http import GatewayRequest
from routing.gateway.limits import rate_limit_add_tokens, rate_limit_admit
from routing.gateway.pipeline_parallel import parallel_run
from routing.gateway.pipeline_plan import Planned, calls_plan, step_body
from routing.gateway.pipeline_steps import (
    Outcome,
    Step,
    all_failed,
    post_gate,
    step_account,
    step_run,
)
from routing.gateway.pipeline_stream import stream_buffered, stream_live
from routing.gateway.planning import Plan, model_names
from routing.gateway.token_bounds import (
    estimate_prompt_tokens,
    prompt_token_bound,
    reservation_max,
)
from routing.ingress.anthropic import canonical_to_messages_response
from routing.models import PipelineVersion
from routing.pipeline_rows import pipeline_version_async
from routing.providers.base import JSON, NO_MARKS, IngressMarks, Usage
from routing.router_request import models_allowed_check
from routing.routers import messages_prompt, router_decide_async

PIPELINE_PREFIX = "pipeline/"


async def pipeline_serve(
    req: GatewayRequest,
    key: AuthenticatedKey,
    body: JSON,
    *,
    anthropic: bool,
    admitted: bool = False,
    marks: IngressMarks = NO_MARKS,
) -> None:
    """Serve one pipeline request: plan every call, hold once, run, respond, record once. Its
    calls share the request's ``marks`` (the messages they carry are the request's)."""
    model = str(body["model"])
    _refuse_unsupported(body)
    # Chat's rule and 403 (``models``/``router`` were refused above: ``model`` is all it names).
    models_allowed_check(key.allowed_models, [("model", model)], model_names)
    version = await _active_version(key.organization_id, model.removeprefix(PIPELINE_PREFIX))
    # A key allowed a pipeline may call its steps, as a key allowed a router may call its picks.
    unrestricted = replace(key, allowed_models=())
    planned = await calls_plan(body, unrestricted, version, await catalog_get(), marks)
    prompt_estimate = estimate_prompt_tokens(body)
    if admitted:  # counted by the caller: only its prompt tokens are still to count
        await rate_limit_add_tokens(key, prompt_estimate)
    else:
        await rate_limit_admit(key, prompt_estimate)
    generation_id = metering.generation_id_new()
    await metering.hold(key, generation_id, planned.reserved)
    draft = UsageDraft(
        generation_id=generation_id,
        organization_id=key.organization_id,
        key_id=key.id,
        status="failed",
        requested_model=model,
        streamed=bool(body.get("stream")),
        prompt=messages_prompt(body["messages"]) if key.prompt_logging else "",
    )
    plan = Plan(requested_model=model, candidates=[])
    ex = Exchange(
        req,
        key,
        body,
        anthropic,
        plan,
        generation_id,
        prompt_estimate,
        planned.reserved,
        draft,
        prompt_bound=prompt_token_bound(body),
        marks=marks,
    )
    await exchange_run(ex, _run(ex, version, planned))


async def _run(ex: Exchange, version: PipelineVersion, planned: Planned) -> None:
    if version.kind == "parallel":
        served, extra = await parallel_run(ex, planned.steps, version.options, planned.aggregate)
    elif version.kind == "series":
        served, extra = await _series(ex, planned.steps)
    else:
        cascaded = await _cascade(ex, version, planned.steps)
        if cascaded is None:
            return  # streamed live, to the end
        served, extra = cascaded
    await _respond(ex, version, served, extra)


def _refuse_unsupported(body: JSON) -> None:
    for name in ("models", "router"):
        if body.get(name) is not None:
            raise BadRequest(
                f"{name} does not apply to a pipeline: its steps name the models.", param=name
            )


async def _active_version(organization_id: int, slug: str) -> PipelineVersion:
    version = await pipeline_version_async(organization_id, slug)  # cached: routing.pipeline_rows
    if version is None:
        raise NotFound(
            f"No pipeline 'pipeline/{slug}' in this organization; GET "
            "/api/v1/pipelines lists them.",
            param="model",
        )
    return version


# --- running the steps ---------------------------------------------------------------------------


async def _predicted_score(ex: Exchange, gate: JSON, model: str) -> float | None:
    """The gate's router's predicted score for ``model`` on this prompt; None if it has none."""
    try:
        decision = await router_decide_async(
            organization_id=ex.key.organization_id,
            model_id=f"router/{gate['router']}",
            prompt=messages_prompt(ex.body["messages"]),
            tradeoff=None,
            candidates=[model],
            catalog=await catalog_get(),
        )
    except ApiError:
        return None
    return next((c.score for c in decision.ranked if c.model == model), None)


def _skipped(ex: Exchange, step: Step, score: float) -> None:
    """A step its pre-call gate skipped: recorded (no call, no cost) with the predicted score."""
    ex.draft.steps.append(_uncalled(step, "skipped", "predicted_fail") | {"predicted_score": score})


def _uncalled(step: Step, status: str, gate: str) -> JSON:
    """The record of a step that was not called: no provider, no tokens, no cost."""
    return {
        "step": step.index,
        "model": step.spec["model"],
        "provider": "",
        "status": status,
        "gate": gate,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": money_str(ZERO),
        "latency_ms": None,
    }


async def _cascade(
    ex: Exchange, version: PipelineVersion, steps: list[Step]
) -> tuple[Outcome, JSON] | None:
    """The first answer that passes its gate (else the last answer); None when a step without
    a post-call gate, the first one called, was streamed live to the client."""
    served: Outcome | None = None
    passed = False
    for step in steps:
        pre_gate = step.spec.get("pre_gate")
        if pre_gate is not None:
            score = await _predicted_score(ex, pre_gate, step.spec["model"])
            if score is not None and score < pre_gate["min_score"]:
                _skipped(ex, step, score)
                continue
        if _streams_live(ex, step):
            head = partial(_pipeline_object, ex, {"passed": True, "version": version})
            if await stream_live(ex, step, head):
                return None
            continue  # no provider opened a stream: the next step
        outcome = await step_run(ex, step)
        record = step_account(ex, outcome.ex, step, "no_answer")
        if outcome.completion is None:
            continue
        served = outcome
        passed = await post_gate(ex, step, outcome, record)
        if passed:
            break
    if served is None:
        raise all_failed(ex)
    return served, {"passed": passed}


def _streams_live(ex: Exchange, step: Step) -> bool:
    """A streamed request's step is relayed as it comes when its answer needs no post-call
    gate and no earlier step was called (every one before it skipped by its pre-call gate)."""
    return (
        bool(ex.body.get("stream"))
        and step.spec.get("gate") is None
        and all(record["status"] == "skipped" for record in ex.draft.steps)
    )


async def _series(ex: Exchange, steps: list[Step]) -> tuple[Outcome, JSON]:
    previous = ""
    outputs: dict[int, str] = {}
    outcome: Outcome | None = None
    for position, step in enumerate(steps):
        body = step_body(ex.body, step.spec, step.index, previous, series=True)
        if position:  # the first step sends the prompt the plan held: nothing to re-hold
            step = await _held_for(ex, step, body, later=steps[position + 1 :])
        outcome = await step_run(ex, step, body)
        step_account(ex, outcome.ex, step, "none" if outcome.completion else "no_answer")
        if outcome.completion is None:
            raise all_failed(ex)
        previous = outputs[step.index] = outcome.text
    assert outcome is not None  # a pipeline has at least one step
    return outcome, {"outputs": outputs}


async def _held_for(ex: Exchange, step: Step, body: JSON, later: list[Step]) -> Step:
    """``step`` held for the prompt it sends, now that its ``{previous}`` is known. The plan held
    the previous answer at 4 bytes a token; a prompt is bounded by its UTF-8 bytes (a token per
    byte, ``prompt_token_bound``), so ordinary prose (about 4.5 bytes a token) and long tokens
    (runs of spaces, repeated characters) both need more. Such a step takes what it needs of
    the request's hold that earlier steps left unspent (never what they spent, never what later
    steps are held for). When that cannot cover it, the step is still called on what it has
    and a charge above that is flagged ``over_hold`` (``metering.price``), as before holds were
    borrowed: an answerable request is never refused for the hold's estimate. Only when the
    balance beyond every hold cannot cover the difference is it refused (402, the step recorded
    as not called; the earlier steps are billed). Not for the first step: its body and bound
    are the plan's own (``pipeline_plan``: no ``{previous}``, no extra bytes), so the bound
    computed again equalled its hold and it was returned as it was."""
    needed = reservation_max(body, step.plan.candidates, prompt_token_bound(body))
    if needed <= step.reserved:
        return step
    spare = ex.reserved - ex.draft.cost - sum((s.reserved for s in later), ZERO)
    if needed <= spare:
        return replace(step, reserved=needed)
    has = max(spare, step.reserved)
    available = await metering.unheld(ex.key)
    if needed - has > available:
        _not_called(ex, step)
        raise InsufficientCredits(
            f"Insufficient credits for step {step.index + 1} ({step.spec['model']}) of"
            f" {ex.plan.requested_model}: the previous step's answer makes its prompt larger"
            " than the request's hold planned for. The earlier steps are billed; add credits"
            " or lower max_tokens.",
            metadata={
                "available": money_str(max(ZERO, available)),
                "needed": money_str(needed - has),
                "generation_id": ex.generation_id,
            },
        )
    return replace(step, reserved=has)


def _not_called(ex: Exchange, step: Step) -> None:
    """A step refused before its call: recorded (no call, no cost) so the trace shows it."""
    ex.draft.steps.append(_uncalled(step, "failed", "not_called"))


async def _respond(ex: Exchange, version: PipelineVersion, served: Outcome, extra: JSON) -> None:
    draft, child = ex.draft, served.ex.draft
    bill(ex, Usage(), status="succeeded")  # status and latency; the cost is the calls' sum
    draft.model, draft.provider = child.model, child.provider
    assert served.completion is not None
    total = Usage(
        draft.prompt_tokens, draft.completion_tokens, draft.cached_tokens, draft.reasoning_tokens
    )
    total.cache_write_tokens = draft.cache_write_tokens
    total.cache_write_1h_tokens = ex.cache_write_1h_tokens
    choices = served.completion.choices
    if not ex.body.get("logprobs"):  # asked of the provider for a logprob gate, not by the client
        choices = [{k: v for k, v in c.items() if k != "logprobs"} for c in choices]
    body = {
        "id": ex.generation_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": child.model,
        "provider": child.provider,
        "choices": choices,
        "usage": total.to_openai() | {"cost": float(draft.cost), "is_byok": draft.is_byok},
        "pipeline": _pipeline_object(ex, extra | {"version": version}),
    }
    if ex.key.prompt_logging:
        ex.answer_parts.append(served.text)
    if ex.body.get("stream"):
        await stream_buffered(ex, body, total)
        return
    if ex.anthropic:
        body = canonical_to_messages_response(body, total) | {"pipeline": body["pipeline"]}
    await ex.req.respond_json(200, body, headers={"x-generation-id": ex.generation_id})


def _pipeline_object(ex: Exchange, extra: JSON, records: list[JSON] | None = None) -> JSON:
    """The response's ``pipeline`` object: which pipeline, and every call's record (a series
    step's output; a parallel pipeline's aggregate)."""
    version: PipelineVersion = extra["version"]
    outputs = extra.get("outputs") or {}
    steps = [
        step
        | {"cost": float(step["cost"])}
        | ({"output": outputs[step["step"]]} if step["step"] in outputs else {})
        for step in (ex.draft.steps if records is None else records)
    ]
    head: JSON = {
        "pipeline": ex.plan.requested_model,
        "version": version.number,
        "kind": version.kind,
        "steps": steps,
    }
    for name in ("passed", "aggregate"):
        if name in extra:
            head[name] = extra[name]
    return head
