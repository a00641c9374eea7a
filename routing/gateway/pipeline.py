"""Serving ``model: "pipeline/<slug>"`` (not streamed) on ``POST /v1/chat/completions``,
``/v1/messages`` and ``/v1/responses`` (both arrive here through ``chat._serve``).

One request, several provider calls, billed as ``billing.metering`` describes: every step is
planned before anything is sent, the request holds ONCE the sum of its steps' worst cases, each
call is priced on a child draft of its own, and the request's draft carries the calls as
``steps`` (``UsageStep`` child records) and their total as its cost — the one charge.

- **cascade**: call the steps in order; stop at the first answer that passes its step's gate
  (``routing.pipeline_gates``); a step whose providers all fail escalates too. When no answer
  passes, the last answer is served with ``pipeline.passed: false``. A step's pre-call gate
  asks the organization's trained router for the step model's predicted score on this prompt
  and skips the step (no call, no cost) below ``min_score``; a router that cannot score it
  (untrained, model not among its candidates) leaves the step to be called.
- **series**: each step's prompt is its template with ``{input}`` (the request's last user
  message) and ``{previous}`` (the previous step's answer); the last answer is served and
  ``pipeline.steps[].output`` holds every step's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async

from accounts.keys import AuthenticatedKey
from billing import metering
from billing.metering import UsageDraft, UsageFlag
from routerhub.errors import ApiError, BadRequest, Forbidden, NotFound, UpstreamFailed
from routerhub.money import ZERO, money_str
from routing.gateway import health
from routing.gateway.attempts import attempt
from routing.gateway.catalog_cache import CatalogSnapshot, catalog_get
from routing.gateway.exchange import Exchange, bill, billable_usage, choices_chars, exchange_run
from routing.gateway.http import GatewayRequest
from routing.gateway.limits import rate_limit_admit
from routing.gateway.planning import Plan, plan_request, request_needs
from routing.gateway.request_shape import (
    estimate_prompt_tokens,
    output_token_bound,
    prompt_token_bound,
    reservation_for,
)
from routing.ingress.anthropic import canonical_to_messages_response
from routing.models import Pipeline, PipelineVersion
from routing.pipeline_gates import gate_passes
from routing.providers.base import JSON, Completion, Usage, text_of
from routing.routers import messages_prompt, router_decide_async

PIPELINE_PREFIX = "pipeline/"
_BYTES_PER_TOKEN = 4  # a previous answer's tokens, as prompt bytes of the next series step


@dataclass
class _Step:
    index: int
    spec: JSON
    body: JSON  # the step's request (a series step's {previous} is filled in when it runs)
    plan: Plan
    reserved: Decimal


@dataclass
class _Outcome:
    ex: Exchange
    completion: Completion | None
    usage: Usage

    @property
    def text(self) -> str:
        choices = self.completion.choices if self.completion else []
        return text_of((choices[0].get("message") or {}).get("content")) if choices else ""


async def pipeline_serve(
    req: GatewayRequest, key: AuthenticatedKey, body: JSON, *, anthropic: bool
) -> None:
    """Serve one pipeline request: plan every step, hold once, run, respond, record once."""
    model = str(body["model"])
    _refuse_unsupported(body)
    if key.allowed_models and model not in key.allowed_models:
        raise Forbidden(f"This key may not use the model '{model}'.", param="model")
    version = await _active_version(key.organization_id, model.removeprefix(PIPELINE_PREFIX))
    # A key allowed a pipeline may call its steps, as a key allowed a router may call its picks.
    steps = await _steps_plan(body, replace(key, allowed_models=()), version, await catalog_get())
    prompt_estimate = estimate_prompt_tokens(body)
    await rate_limit_admit(key, prompt_estimate)
    generation_id = metering.generation_id_new()
    reserved = sum((step.reserved for step in steps), ZERO)
    await metering.hold(key, generation_id, reserved)
    draft = UsageDraft(
        generation_id=generation_id,
        organization_id=key.organization_id,
        key_id=key.id,
        status="failed",
        requested_model=model,
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
        reserved,
        draft,
        prompt_bound=prompt_token_bound(body),
    )
    run = _cascade if version.kind == "cascade" else _series
    await exchange_run(ex, run(ex, version, steps))


def _refuse_unsupported(body: JSON) -> None:
    if body.get("stream"):
        raise BadRequest(
            "Streaming a pipeline is not supported yet; send stream: false (the "
            "answer comes whole, with every step in its pipeline object).",
            param="stream",
        )
    for name in ("models", "router"):
        if body.get(name) is not None:
            raise BadRequest(
                f"{name} does not apply to a pipeline: its steps name the models.", param=name
            )


async def _active_version(organization_id: int, slug: str) -> PipelineVersion:
    pipeline = await sync_to_async(_pipeline_load, thread_sensitive=False)(organization_id, slug)
    if pipeline is None or pipeline.active_version is None:
        raise NotFound(
            f"No pipeline 'pipeline/{slug}' in this organization; GET "
            "/api/v1/pipelines lists them.",
            param="model",
        )
    return pipeline.active_version


def _pipeline_load(organization_id: int, slug: str) -> Pipeline | None:
    return (
        Pipeline.objects.select_related("active_version")
        .filter(organization_id=organization_id, slug=slug)
        .first()
    )


async def _steps_plan(
    body: JSON, key: AuthenticatedKey, version: PipelineVersion, catalog: CatalogSnapshot
) -> list[_Step]:
    """Every step's candidates and worst-case cost, before anything is sent."""
    steps: list[_Step] = []
    previous_bound = 0  # the most tokens the previous step can answer (series)
    for index, spec in enumerate(version.steps):
        step_body = _step_body(body, spec, index, "", series=version.kind == "series")
        bound = prompt_token_bound(step_body)
        if version.kind == "series" and _uses_previous(spec, index):
            bound += previous_bound * _BYTES_PER_TOKEN
        plan = await plan_request(
            body=step_body,
            key=key,
            catalog=catalog,
            needs=request_needs(step_body),
            prompt_bound=bound,
        )
        reserved = max(reservation_for(step_body, c, bound) for c in plan.candidates)
        previous_bound = max(output_token_bound(step_body, c.endpoint) for c in plan.candidates)
        steps.append(_Step(index, spec, step_body, plan, reserved))
    return steps


def _uses_previous(spec: JSON, index: int) -> bool:
    return index > 0 and "{previous}" in _template(spec, index)


def _template(spec: JSON, index: int) -> str:
    return str(spec.get("template") or ("{previous}" if index else "{input}"))


def _step_body(body: JSON, spec: JSON, index: int, previous: str, *, series: bool) -> JSON:
    """The request a step sends: the client's, with the step's model (and, in a series, the
    step's prompt: the system messages kept, then its template as the one user message)."""
    step_body = {name: value for name, value in body.items() if name not in ("models", "router")}
    step_body["model"] = spec["model"]
    if spec.get("response_format") is not None:
        step_body["response_format"] = spec["response_format"]
    if series and (index > 0 or spec.get("template")):
        messages = body["messages"]
        prompt = _template(spec, index).replace("{input}", _last_user_text(messages))
        prompt = prompt.replace("{previous}", previous)
        system = [m for m in messages if m.get("role") in ("system", "developer")]
        step_body["messages"] = [*system, {"role": "user", "content": prompt}]
    return step_body


def _last_user_text(messages: list[JSON]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


# --- running the steps ---------------------------------------------------------------------------


async def _call(parent: Exchange, step: _Step, body: JSON) -> _Outcome:
    """One step's provider call, with fallback across its candidates, priced on a child draft."""
    child = UsageDraft(
        generation_id=f"{parent.generation_id}-s{step.index}",
        organization_id=parent.key.organization_id,
        key_id=parent.key.id,
        status="failed",
    )
    ex = Exchange(
        parent.req,
        parent.key,
        body,
        False,
        step.plan,
        child.generation_id,
        estimate_prompt_tokens(body),
        step.reserved,
        child,
        prompt_bound=prompt_token_bound(body),
    )
    started = time.monotonic()
    for candidate in step.plan.candidates:
        completion = await attempt(ex, candidate)
        if completion is None:
            continue
        parent.attempts.extend(ex.attempts)  # the request's trace shows every step's fallbacks
        ex.endpoint, ex.is_byok = candidate.endpoint, candidate.is_byok
        usage = billable_usage(ex, completion.usage, choices_chars(completion.choices))
        bill(ex, usage, status="succeeded")
        if not candidate.is_byok and ex.first_byte_at is not None:
            health.health_record_success(
                candidate.endpoint.id,
                ttft_ms=(ex.first_byte_at - started) * 1000,
                completion_tokens=usage.completion_tokens,
                duration_s=time.monotonic() - started,
            )
        child.latency_ms = int((time.monotonic() - started) * 1000)
        return _Outcome(ex, completion, usage)
    parent.attempts.extend(ex.attempts)
    return _Outcome(ex, None, Usage())


def _account(parent: Exchange, outcome: _Outcome, step: _Step, gate: str) -> JSON:
    """Add a step's call to the request's draft (a child record) and return the record."""
    child, draft = outcome.ex.draft, parent.draft
    record: JSON = {
        "step": step.index,
        "model": child.model or step.spec["model"],
        "provider": child.provider,
        "status": child.status,
        "gate": gate,
        "prompt_tokens": child.prompt_tokens,
        "completion_tokens": child.completion_tokens,
        "cost": money_str(child.cost),
        "latency_ms": child.latency_ms,
    }
    draft.steps.append(record)
    draft.cost += child.cost
    draft.prompt_tokens += child.prompt_tokens
    draft.completion_tokens += child.completion_tokens
    draft.cached_tokens += child.cached_tokens
    draft.reasoning_tokens += child.reasoning_tokens
    draft.is_byok = draft.is_byok or child.is_byok
    for flag in filter(None, child.flags.split(",")):
        draft.flag(UsageFlag(flag))
    return record


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


def _skipped(ex: Exchange, step: _Step, score: float) -> None:
    """A step its pre-call gate skipped: recorded (no call, no cost) with the predicted score."""
    ex.draft.steps.append(
        {
            "step": step.index,
            "model": step.spec["model"],
            "provider": "",
            "status": "skipped",
            "gate": "predicted_fail",
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost": money_str(ZERO),
            "latency_ms": None,
            "predicted_score": score,
        }
    )


async def _cascade(ex: Exchange, version: PipelineVersion, steps: list[_Step]) -> None:
    served: _Outcome | None = None
    passed = False
    for step in steps:
        pre_gate = step.spec.get("pre_gate")
        if pre_gate is not None:
            score = await _predicted_score(ex, pre_gate, step.spec["model"])
            if score is not None and score < pre_gate["min_score"]:
                _skipped(ex, step, score)
                continue
        outcome = await _call(ex, step, step.body)
        if outcome.completion is None:
            _account(ex, outcome, step, "no_answer")
            continue
        gate = step.spec.get("gate")
        passed = gate_passes(gate, outcome.text)
        _account(ex, outcome, step, "none" if gate is None else "passed" if passed else "failed")
        served = outcome
        if passed:
            break
    if served is None:
        raise _all_failed(ex)
    await _respond(ex, version, served, {"passed": passed})


async def _series(ex: Exchange, version: PipelineVersion, steps: list[_Step]) -> None:
    previous = ""
    outputs: dict[int, str] = {}
    outcome: _Outcome | None = None
    for step in steps:
        body = _step_body(ex.body, step.spec, step.index, previous, series=True)
        outcome = await _call(ex, step, body)
        if outcome.completion is None:
            _account(ex, outcome, step, "no_answer")
            raise _all_failed(ex)
        previous = outputs[step.index] = outcome.text
        _account(ex, outcome, step, "none")
    assert outcome is not None  # a pipeline has at least one step
    await _respond(ex, version, outcome, {"outputs": outputs})


def _all_failed(ex: Exchange) -> UpstreamFailed:
    return UpstreamFailed(
        f"Every step of {ex.plan.requested_model} failed to answer.",
        metadata={"attempts": ex.attempts, "generation_id": ex.generation_id},
    )


async def _respond(ex: Exchange, version: PipelineVersion, served: _Outcome, extra: JSON) -> None:
    draft, child = ex.draft, served.ex.draft
    bill(ex, Usage(), status="succeeded")  # status and latency; the cost is the steps' sum
    draft.model, draft.provider = child.model, child.provider
    assert served.completion is not None
    total = Usage(
        draft.prompt_tokens, draft.completion_tokens, draft.cached_tokens, draft.reasoning_tokens
    )
    body = {
        "id": ex.generation_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": child.model,
        "provider": child.provider,
        "choices": served.completion.choices,
        "usage": total.to_openai() | {"cost": float(draft.cost), "is_byok": draft.is_byok},
        "pipeline": _pipeline_object(ex, version, extra),
    }
    if ex.anthropic:
        body = canonical_to_messages_response(body, total) | {"pipeline": body["pipeline"]}
    if ex.key.prompt_logging:
        ex.answer_parts.append(served.text)
    await ex.req.respond_json(200, body, headers={"x-generation-id": ex.generation_id})


def _pipeline_object(ex: Exchange, version: PipelineVersion, extra: JSON) -> dict[str, Any]:
    outputs = extra.get("outputs") or {}
    steps = [
        step
        | {"cost": float(step["cost"])}
        | ({"output": outputs[step["step"]]} if step["step"] in outputs else {})
        for step in ex.draft.steps
    ]
    head: dict[str, Any] = {
        "pipeline": ex.plan.requested_model,
        "version": version.number,
        "kind": version.kind,
        "steps": steps,
    }
    if "passed" in extra:
        head["passed"] = extra["passed"]
    return head
