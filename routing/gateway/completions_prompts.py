"""``POST /v1/completions`` with a list of prompts: one generation, one hold, one usage record.

Each prompt is its own provider call (a chat model answers one conversation at a time), but the
request is billed as one, as at OpenAI: one generation id, one hold (the sum of every prompt's
worst case), one usage record whose tokens and cost are the prompts' sums, one ``usage``. The
plan (models, fallbacks, a router's choice, the context-window check) is made once, for the
longest prompt: a window that holds it holds every prompt, each being sent alone.

The prompts of one candidate are sent together; the candidate serves the request only if it
answers every prompt, otherwise the next candidate is tried with all of them, so that one
endpoint (one price) serves the whole request and the choices stay whole (clients such as
LangChain slice them by position: a missing prompt would shift the others' answers). The answers
a failing candidate did give are not served, but they are billed, once, at that endpoint with the
usage it reported (the provider bills them; shown as ``billed`` in that candidate's trace entry),
and when every candidate failed the error says how many prompts were answered and billed. A
refusal (4xx) of one prompt is raised only once the candidate's other calls have ended, so what
it answered is billed whatever order the answers came in, and said so in the error (with the
generation id); a client that leaves has the answers that came billed as answers and the prompts
still at the provider as sent (``_prompts_sent``). The request has one deadline,
``GATEWAY_TOTAL_TIMEOUT`` from its start, across candidates and prompts: a call still unanswered
then times out (billed its prompt, as sent) and no further candidate is tried (the error says
how many were not, and a 408 says the deadline passed when none was).
Choices come back in OpenAI's order:
``index = prompt_index * n + i``. Several prompts are never streamed
(``completions.chat_bodies_from_completion`` refuses it).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from decimal import Decimal

from accounts.keys import AuthenticatedKey
from billing import metering
from billing.metering import UsageDraft, UsageFlag
from routerhub.errors import ApiError
from routing.gateway.attempts import attempt, deadline_stop, exhausted
from routing.gateway.catalog_cache import catalog_get
from routing.gateway.exchange import (
    Exchange,
    answer_headers,
    bill,
    call_abandoned,
    exchange_run,
    record_success,
    response_head,
)
from routing.gateway.http import GatewayRequest
from routing.gateway.limits import rate_limit_admit
from routing.gateway.needs import request_needs
from routing.gateway.openrouter_request import openrouter_request
from routing.gateway.planning import Candidate, plan_request
from routing.gateway.request_shape import request_validate
from routing.gateway.timeouts import TimedOut
from routing.gateway.token_bounds import estimate_prompt_tokens, prompt_token_bound, reservation_max
from routing.gateway.trace import answer_text
from routing.gateway.usage_estimate import billable_usage, completion_chars, timed_out_usage
from routing.providers.base import JSON, Completion, Usage, text_of
from routing.routers import messages_prompt


def text_choice(choice: JSON, index: int) -> JSON:
    """A chat choice (or a chunk's) as a text completion's choice at ``index``."""
    part = choice.get("message") or choice.get("delta") or {}
    return {
        "index": index,
        "text": text_of(part.get("content")),
        "finish_reason": choice.get("finish_reason"),
        "logprobs": None,
    }


async def serve_prompts(req: GatewayRequest, key: AuthenticatedKey, bodies: list[JSON]) -> None:
    """Serve the chat request of each prompt (``bodies``, the same but for the prompt)."""
    catalog = await catalog_get()
    bodies = [openrouter_request(body, catalog) for body in bodies]
    for body in bodies:
        request_validate(body)
    bounds = [prompt_token_bound(body) for body in bodies]
    longest = max(range(len(bodies)), key=bounds.__getitem__)
    plan = await plan_request(
        body=bodies[longest],
        key=key,
        catalog=catalog,
        needs=request_needs(bodies[longest]),
        prompt_bound=bounds[longest],
    )
    estimates = [estimate_prompt_tokens(body) for body in bodies]
    await rate_limit_admit(key, sum(estimates))
    generation_id = metering.generation_id_new()
    reserved = sum(
        (
            reservation_max(body, plan.candidates, bound)
            for body, bound in zip(bodies, bounds, strict=True)
        ),
        start=Decimal(0),
    )
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
        streamed=False,
        prompt=_prompts_text(bodies) if key.prompt_logging else "",
    )
    ex = Exchange(
        req,
        key,
        bodies[longest],
        False,
        plan,
        generation_id,
        sum(estimates),
        reserved,
        draft,
        prompt_bound=sum(bounds),
    )
    # One exchange per prompt, sharing the request's draft, attempts and answer log.
    parts = [
        replace(ex, body=body, prompt_estimate=estimate, prompt_bound=bound)
        for body, estimate, bound in zip(bodies, estimates, bounds, strict=True)
    ]
    await exchange_run(ex, _complete_all(ex, parts))


def _prompts_text(bodies: list[JSON]) -> str:
    return "\n\n".join(messages_prompt(body["messages"]) for body in bodies)


async def _complete_all(ex: Exchange, parts: list[Exchange]) -> None:
    ex.on_abandon.append(lambda: _prompts_sent(ex, parts))
    # One deadline for the whole request, every candidate's calls included (``attempts``): no
    # call is started with too little of it left, and the request fails with what it has.
    for tried, candidate in enumerate(ex.plan.candidates):
        if (late := deadline_stop(ex, tried)) is not None:
            raise _answers_said(late, ex)
        completions = await _attempt_all(ex, parts, candidate)
        if completions is None:
            continue
        ex.served_by(candidate)
        usage = _summed(
            [
                _usage_at(part, candidate, done)
                for part, done in zip(parts, completions, strict=True)
            ]
        )
        cost = bill(ex, usage, status="succeeded")
        n = int(ex.body.get("n") or 1)
        choices = [
            text_choice(choice, prompt * n + choice.get("index", 0))
            for prompt, done in enumerate(completions)
            for choice in done.choices
        ]
        response = response_head(ex, "text_completion") | {
            "choices": choices,
            "usage": usage.to_openai() | {"cost": float(cost), "is_byok": ex.is_byok},
        }
        if ex.key.prompt_logging:
            ex.answer_parts.extend(answer_text(done.choices) for done in completions)
        await ex.req.respond_json(200, response, headers=answer_headers(ex))
        record_success(ex, usage)
        return
    raise _answers_said(exhausted(ex), ex)


async def _attempt_all(
    ex: Exchange, parts: list[Exchange], candidate: Candidate
) -> list[Completion] | None:
    """Every prompt's answer from ``candidate``, or None if it failed any. A 4xx it gave any
    prompt is raised (another provider would refuse that prompt too), but only once the other
    prompts' calls have ended — by the request's deadline at the latest, a call still
    unanswered then timing out (billed its prompt, as sent): the provider had them, so what it
    answered is billed — whatever order the answers came in — and the error says so."""
    for part in parts:  # an earlier candidate's calls ended: what they answered is billed
        part.sending = None
    since = len(ex.attempts)  # this candidate's trace entries come after
    tasks = [asyncio.ensure_future(attempt(part, candidate)) for part in parts]
    try:
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    except asyncio.CancelledError:  # the client left (or the server): answers that came billed
        _answers_discarded(ex, parts, tasks, candidate, since, ex.cancelled_by)
        raise
    started = [part.first_byte_at for part in parts if part.first_byte_at is not None]
    ex.first_byte_at = ex.first_byte_at or min(started, default=None)
    completions = [done for done in outcomes if isinstance(done, Completion)]
    if len(completions) == len(parts):
        return completions
    errors = [error for error in outcomes if isinstance(error, BaseException)]
    _answers_discarded(ex, parts, tasks, candidate, since, "refused" if errors else "failed")
    if not errors:
        return None
    if isinstance(errors[0], ApiError):  # the first prompt's refusal, as one request would get it
        raise _answers_said(errors[0], ex)
    raise errors[0]


def _answers_discarded(
    ex: Exchange,
    parts: list[Exchange],
    tasks: list[asyncio.Task[Completion | None]],
    candidate: Candidate,
    since: int,
    error: str,
) -> None:
    """The answers ``candidate`` gave before it failed another prompt or the client left: not
    served, but billed once at its price and reported usage (``exchange.timeouts_charge`` adds
    them to the request's charge), shown as ``billed`` in its last trace entry (one of its own,
    saying ``error``, when its failure left none or it refused). An answered call is no longer one the provider
    merely has (``_prompts_sent`` would bill its prompt again)."""
    answered = [
        (part, done) for part, task in zip(parts, tasks, strict=True) if (done := _answer(task))
    ]
    for part, _ in answered:
        part.sending = None
    if not answered:
        return
    endpoint = candidate.endpoint
    entry = next(
        (
            a
            for a in reversed(ex.attempts[since:])
            if (a["provider"], a["model"]) == (endpoint.provider_slug, endpoint.model_id)
        ),
        None,
    )
    # A refusal (4xx) or the client leaving records none; a refusal is never another prompt's
    # entry (a sibling that timed out has its own, billed its estimate).
    if entry is None or error == "refused":
        entry = {"model": endpoint.model_id, "provider": endpoint.provider_slug, "error": error}
        ex.attempts.append(entry)
    entry["answered"] = f"{len(answered)} of {len(parts)} prompts"
    usage = _summed([_usage_at(part, candidate, done) for part, done in answered])
    ex.timed_out.append(TimedOut(entry, candidate, usage, estimated=False))


def _answer(task: asyncio.Task[Completion | None]) -> Completion | None:
    """A prompt's answer, if its call ended with one (not failed, cancelled or still running)."""
    if not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


def _answers_said(error: ApiError, ex: Exchange) -> ApiError:
    """The request failed (every candidate, or a refusal): ``error`` names its generation (the
    usage record) and says which candidates answered some prompts, billed, and which had prompts
    that timed out once sent (billed their estimate by ``exchange.timeouts_charge``, still to
    come)."""
    error.metadata["generation_id"] = ex.generation_id
    error.headers["x-generation-id"] = ex.generation_id
    for entry in ex.attempts:
        if "answered" in entry:
            error.message += (
                f" {entry['answered']} were answered by {entry['provider']} ({entry['model']}) and"
                " are billed, but not served: a list of prompts is served whole or not at all."
                " Send the failed prompts again, or the list, as a new request."
            )
    sent = Counter((t.entry["provider"], t.entry["model"]) for t in ex.timed_out if t.estimated)
    for (provider, model), count in sent.items():
        prompts = "1 prompt" if count == 1 else f"{count} prompts"
        error.message += (
            f" {prompts} sent to {provider} ({model}) timed out unanswered and"
            f" {'is' if count == 1 else 'are'} billed the prompt tokens, estimated"
            " (the provider bills a prompt it received)."
        )
    return error


def _prompts_sent(ex: Exchange, parts: list[Exchange]) -> None:
    """A client left before the answer: the request is billed the prompts a provider has (each
    part's ``sending``, set once its request was written and cleared if that call failed or
    was answered — ``_answers_discarded`` bills an answer as such), at that provider — not every
    prompt, nor any whose call failed or was never sent — each estimated and priced at its own
    tier (``_summed``); before, their summed estimate's tier."""
    sent = [part for part in parts if part.sending is not None]
    if ex.endpoint is not None or not sent:
        return
    ex.sending = sent[0].sending
    ex.prompt_estimate = sum(part.prompt_estimate for part in sent)
    ex.prompt_bound = sum(part.prompt_bound for part in sent)
    call_abandoned(ex)
    assert ex.endpoint is not None
    ex.draft.flag(UsageFlag.USAGE_ESTIMATED)
    usage = _summed([timed_out_usage(part, ex.endpoint) for part in sent])
    bill(ex, usage, status="aborted", error_type=ex.cancelled_by)


def _usage_at(part: Exchange, candidate: Candidate, completion: Completion) -> Usage:
    """A prompt's billable usage as ``candidate`` answered it."""
    part.served_by(candidate)
    return billable_usage(part, completion.usage, completion_chars(completion))


def _summed(usages: list[Usage]) -> Usage:
    return Usage(
        prompt_tokens=sum(u.prompt_tokens for u in usages),
        completion_tokens=sum(u.completion_tokens for u in usages),
        cached_tokens=sum(u.cached_tokens for u in usages),
        reasoning_tokens=sum(u.reasoning_tokens for u in usages),
        cache_write_tokens=sum(u.cache_write_tokens for u in usages),
        cache_write_1h_tokens=sum(u.cache_write_1h_tokens for u in usages),
        clamped=any(u.clamped for u in usages),
        parts=tuple(usages),  # each prompt priced at its own tier (``metering.price``)
    )
