"""A pipeline's provider calls (``routing.gateway.pipeline``): one step's call with fallback
across its candidates, priced on a child draft; adding it to the request's draft as a child
record; and the post-call gates that need more than the answer — a regex (out of process), a
judge model (a call of its own, a child record in the same hold) and the provider's logprobs.

Child records are numbered by ``step``: 0..n-1 are the definition's steps (a parallel
pipeline's branches); the judge of cascade step i is n + i; a parallel pipeline's judge or
synthesiser is n.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import partial

from django.conf import settings

from billing import metering
from billing.metering import UsageDraft, UsageFlag
from routerhub.errors import (
    InsufficientCredits,
    KeyLimitReached,
    UpstreamFailed,
    UpstreamTimeout,
)
from routerhub.money import ZERO, money_str
from routing.gateway import health
from routing.gateway.attempts import attempt, deadline_passed, deadline_stop
from routing.gateway.exchange import Exchange, bill, call_abandoned
from routing.gateway.planning import Plan
from routing.gateway.regex_gate import UNDECIDABLE, regex_gate_search, schema_gate_check
from routing.gateway.timeouts import timeouts_charge
from routing.gateway.token_bounds import (
    estimate_prompt_tokens,
    prompt_token_bound,
    reservation_max,
)
from routing.gateway.usage_estimate import billable_usage, completion_chars, partial_usage
from routing.pipeline_gates import (
    GATE_MAX_CHARS,
    gate_passes,
    json_value,
    judge_verdict,
    mean_logprob,
)
from routing.providers.base import JSON, Completion, Usage, text_of

JUDGE_MAX_TOKENS = 16  # a verdict (PASS, FAIL, a score, a branch's number) is a word
GATE_JUDGE_TEMPLATE = (
    "You are grading an answer.\n\nQuestion:\n{input}\n\nAnswer:\n{answer}\n\n"
    "Reply PASS if the answer is correct and complete, otherwise FAIL. Reply with one word."
)
_FIELD = re.compile(r"\{(input|previous|answer|answers)\}")
# The gate labels a step's record can carry; only "passed" (and "none": no gate) stop a cascade.
PASSED = "passed"


@dataclass
class Step:
    index: int  # the child record's step number
    spec: JSON
    body: JSON  # the call's request (a series step's {previous} is filled in when it runs)
    plan: Plan
    reserved: Decimal
    judge: Step | None = None  # a judge gate's call, planned (and held for) with the step
    output_bound: int = 0  # the most tokens this call can answer


@dataclass
class Outcome:
    ex: Exchange
    completion: Completion | None
    usage: Usage = field(default_factory=Usage)

    @property
    def choice(self) -> JSON:
        choices = self.completion.choices if self.completion else []
        return choices[0] if choices else {}

    @property
    def text(self) -> str:
        return text_of((self.choice.get("message") or {}).get("content"))


def child_exchange(parent: Exchange, step: Step, body: JSON) -> Exchange:
    """The exchange of one provider call: its own draft (never recorded by itself)."""
    child = UsageDraft(
        generation_id=f"{parent.generation_id}-s{step.index}",
        organization_id=parent.key.organization_id,
        key_id=parent.key.id,
        status="failed",
    )
    child_ex = Exchange(
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
        marks=parent.marks,  # its messages are the request's (or new ones, which none names)
    )
    parent.on_abandon.append(partial(_abandoned, parent, child_ex, step))
    return child_ex


def _abandoned(parent: Exchange, child_ex: Exchange, step: Step) -> None:
    """The client left before this call was one of the request's steps: it becomes one now — an
    answer that came as it was priced, a call a provider still had billed its prompt
    (``call_abandoned``), a call that found no provider at no cost."""
    if child_ex.accounted:
        return
    draft = child_ex.draft
    if draft.status in ("failed", "timed_out"):
        call_abandoned(child_ex)
        if child_ex.endpoint is not None:
            status = "cancelled" if draft.status == "failed" else draft.status
            latency = draft.latency_ms  # a timed-out branch's is its timeout, not the request's
            bill(child_ex, partial_usage(child_ex), status=status)
            draft.latency_ms = latency or draft.latency_ms
    step_account(
        parent, child_ex, step, "not_chosen" if draft.status == "succeeded" else "cancelled"
    )


async def step_call(ex: Exchange) -> Outcome:
    """One call with fallback across its candidates, priced on ``ex``'s child draft. Cancelled
    (a parallel branch's timeout or aggregate), it has priced nothing: a whole answer is priced
    only once it has arrived, and nothing awaits after that."""
    started = time.monotonic()
    for tried, candidate in enumerate(ex.plan.candidates):
        if deadline_stop(ex, tried) is not None:  # the request's deadline, across its steps
            ex.deadline_stopped = True
            break
        completion = await attempt(ex, candidate)
        if completion is None:
            continue
        ex.served_by(candidate)
        usage = billable_usage(ex, completion.usage, completion_chars(completion))
        bill(ex, usage, status="succeeded")
        if not candidate.is_byok and ex.first_byte_at is not None:
            health.health_record_success(
                candidate.endpoint.id,
                ttft_ms=(ex.first_byte_at - started) * 1000,
                completion_tokens=usage.completion_tokens,
                duration_s=time.monotonic() - started,
            )
        ex.draft.latency_ms = int((time.monotonic() - started) * 1000)
        return Outcome(ex, completion, usage)
    ex.draft.latency_ms = int((time.monotonic() - started) * 1000)
    return Outcome(ex, None)


async def step_run(parent: Exchange, step: Step, body: JSON | None = None) -> Outcome:
    return await step_call(child_exchange(parent, step, step.body if body is None else body))


async def step_held_for(ex: Exchange, step: Step, body: JSON, later: Sequence[Step]) -> Step:
    """``step`` held for the prompt it sends, ``body``, now that the earlier answers it embeds
    are known: a series step's ``{previous}``, a judge gate's ``{answer}``, a parallel judge's
    or synthesiser's ``{answers}``. The plan held each answer at 4 bytes a token; a prompt is
    bounded by its UTF-8 bytes (a token per byte, ``prompt_token_bound``), so ordinary prose
    (about 4.5 bytes a token) and long tokens (runs of spaces, repeated characters) both need
    more. Such a call takes what it needs of the request's hold that earlier calls left unspent
    (never what they spent, never what the ``later`` calls are held for). When that cannot
    cover it, it is still called on what it has and a charge above that is flagged
    ``over_hold`` (``metering.price``), as before holds were borrowed: an answerable request is
    never refused for the hold's estimate. Only when what the payer can hold beyond every hold
    cannot cover the difference is it refused, the call recorded as not called and the earlier
    calls billed: 402 when the organization's credits fall short, 403 when the key's limit
    windows do (its own or an ancestor's: ``metering.unheld``; before, only the credits were
    looked at, and a key near its limit ran a call past it)."""
    needed = reservation_max(body, step.plan.candidates, prompt_token_bound(body))
    if needed <= step.reserved:
        return step
    spare = ex.reserved - ex.draft.cost - sum((s.reserved for s in later), ZERO)
    if needed <= spare:
        return replace(step, reserved=needed)
    has = max(spare, step.reserved)
    available = await metering.unheld(ex.key)
    if needed - has > available.amount:
        ex.draft.steps.append(uncalled_record(step, "failed", "not_called"))
        raise _beyond_holds(ex, step, available, needed - has)
    return replace(step, reserved=has)


def _beyond_holds(
    ex: Exchange, step: Step, available: metering.Unheld, needed: Decimal
) -> InsufficientCredits | KeyLimitReached:
    """The refusal of a call the payer cannot cover beyond its holds: 402 when the organization's
    credits fall short, 403 ``key_limit_reached`` when the key's limit windows do (as its hold
    would have been refused)."""
    call = f"step {step.index + 1} ({step.spec['model']}) of {ex.plan.requested_model}"
    why = (
        "the earlier answers it is sent make its prompt larger than the request's hold planned"
        " for. The earlier steps are billed"
    )
    metadata = {
        "available": money_str(max(ZERO, available.amount)),
        "needed": money_str(needed),
        "generation_id": ex.generation_id,
    }
    refused_by = available.refused_by(needed) if available.key_limited else None
    if refused_by is not None:
        # What a hold's ``key_limit_reached`` says (README, hierarchical budget): the window
        # that refuses it and its period (the first in key id order that cannot cover it; an
        # ancestor's named, never its limit or spend), what this key can still spend and when
        # that (tightest) window ends.
        end = available.reset_at
        metadata |= {
            "remaining": metadata["available"],
            "reset": refused_by.reset,
            "reset_at": end.isoformat() if end else None,
        }
        limit = "This key's credit limit"
        if refused_by.key_id != ex.key.id:
            metadata["limited_by"] = refused_by.label
            limit = f"The credit limit of the key {refused_by.label} this key was made from"
        return KeyLimitReached(
            f"{limit} cannot cover {call}: {why}; raise that limit or lower max_tokens.",
            metadata=metadata,
        )
    return InsufficientCredits(
        f"Insufficient credits for {call}: {why}; add credits or lower max_tokens.",
        metadata=metadata,
    )


def uncalled_record(step: Step, status: str, gate: str) -> JSON:
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


def step_account(parent: Exchange, child_ex: Exchange, step: Step, gate: str) -> JSON:
    """Add one call to the request's draft (a child record), exactly once, and return the record
    (its gate may still be filled in)."""
    child, draft = child_ex.draft, parent.draft
    child_ex.accounted = True
    timeouts_charge(child_ex)  # a call whose every candidate timed out with the request sent
    record = step_record(child_ex, step, gate)
    parent.attempts.extend(child_ex.attempts)  # the request's trace shows every call's fallbacks
    if child_ex.deadline_stopped and parent.stopped_step is None:
        parent.stopped_step = f"Step {step.index + 1} ({step.spec['model']})"
    draft.steps.append(record)
    draft.cost += child.cost
    draft.prompt_tokens += child.prompt_tokens
    draft.completion_tokens += child.completion_tokens
    draft.cached_tokens += child.cached_tokens
    draft.cache_write_tokens += child.cache_write_tokens
    parent.cache_write_1h_tokens += child_ex.cache_write_1h_tokens
    draft.reasoning_tokens += child.reasoning_tokens
    draft.is_byok = draft.is_byok or child.is_byok
    for flag in filter(None, child.flags.split(",")):
        draft.flag(UsageFlag(flag))
    return record


def step_record(child_ex: Exchange, step: Step, gate: str) -> JSON:
    """One call's child record (``billing.drafts.STEP_FIELDS``)."""
    child = child_ex.draft
    return {
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


async def post_gate(
    parent: Exchange, step: Step, outcome: Outcome, record: JSON, later: Sequence[Step] = ()
) -> bool:
    """Check a cascade step's answer against its gate, write the outcome on its record (passed,
    failed, or why the gate could not pass: gate_timeout, undecidable, judge_garbage,
    judge_failed) and return whether it passed. No gate: it passes. A judge is held for its
    prompt (``step_held_for``) beside the ``later`` steps' holds."""
    gate = step.spec.get("gate")
    if gate is None:
        record["gate"] = "none"
        return True
    if gate["type"] == "judge":
        label = await _judged(parent, step, outcome.text[:GATE_MAX_CHARS], gate, later)
    else:
        label = await gate_label(gate, outcome, record)
    record["gate"] = label
    return label == PASSED


async def gate_label(gate: JSON, outcome: Outcome, record: JSON) -> str:
    """The outcome of a gate that needs no model call: passed, failed, gate_timeout (a regex or
    JSON-schema check past ``PIPELINE_REGEX_TIMEOUT``) or undecidable (a logprob gate without
    logprobs, a schema whose check raised). Regex and schema checks run out of process."""
    kind, text = gate["type"], outcome.text[:GATE_MAX_CHARS]
    if kind == "regex":
        found = await regex_gate_search(gate["pattern"], text)
        return "gate_timeout" if found is None else _label(found)
    if kind == "json_schema":
        return await _schema_label(gate["schema"], text)
    if kind == "logprob":
        mean = mean_logprob(outcome.choice)
        record["mean_logprob"] = mean
        return "undecidable" if mean is None else _label(mean >= gate["min_mean"])
    return _label(gate_passes(gate, text))


async def _schema_label(schema: JSON, text: str) -> str:
    value = json_value(text)
    if value is None:
        return "failed"  # not JSON: no schema passes it
    checked = await schema_gate_check(schema, value[0])
    if checked is None:
        return "gate_timeout"
    return _label(checked) if isinstance(checked, bool) else UNDECIDABLE


def _label(passed: bool) -> str:
    return PASSED if passed else "failed"


async def _judged(
    parent: Exchange, step: Step, answer: str, gate: JSON, later: Sequence[Step]
) -> str:
    """Ask the step's judge about its answer; its call is a child record of its own."""
    assert step.judge is not None  # planned with the step
    prompt = gate_judge_prompt(gate, _request_input(parent.body), answer)
    body = judge_body(step.judge.body, prompt)
    judge = await step_held_for(parent, step.judge, body, later)
    outcome = await step_run(parent, judge, body)
    record = step_account(parent, outcome.ex, judge, "judge")
    record["judges_step"] = step.index
    if outcome.completion is None:
        return "judge_failed"
    record["verdict"] = outcome.text[:200]
    verdict = judge_verdict(outcome.text, gate["min_score"])
    return "judge_garbage" if verdict is None else _label(verdict)


def gate_judge_prompt(gate: JSON, question: str, answer: str) -> str:
    return template_fill(judge_template(gate), {"input": question, "answer": answer})


def judge_template(gate: JSON) -> str:
    return str(gate.get("template") or GATE_JUDGE_TEMPLATE)


def template_fill(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``{name}`` of ``values`` replaced in one pass: text put in is never
    read for fields again (a question holding ``{answer}`` stays as it is, not the answer again,
    which the hold did not count)."""
    return _FIELD.sub(lambda match: values.get(match[1], match[0]), template)


def template_copies(template: str, name: str) -> int:
    """How often ``template`` puts ``{name}`` into a prompt: each copy is held for."""
    return template.count("{" + name + "}")


def judge_body(body: JSON, prompt: str) -> JSON:
    """A judge's (or synthesiser's) request: its planned body with ``prompt`` as the one user
    message."""
    return body | {"messages": [{"role": "user", "content": prompt}]}


def _request_input(body: JSON) -> str:
    return request_input(body["messages"])


def all_failed(ex: Exchange) -> UpstreamFailed | UpstreamTimeout:
    """A step did not answer: a 502, or a 408 when the request's deadline stopped a call
    (``attempts.deadline_stop``) and every call tried timed out, as chat's rule (``exhausted``):
    endpoints that failed (a 500) near the deadline are a 502 that says what was not called."""
    metadata = {"attempts": ex.attempts, "generation_id": ex.generation_id}
    model, stopped = ex.plan.requested_model, ex.stopped_step
    answered = any(record["status"] == "succeeded" for record in ex.draft.steps)
    not_called = f"{stopped} of {model} was not called: {deadline_passed()}."
    if stopped is not None and all(a["error"] == "timeout" for a in ex.attempts):
        if answered:  # a series' earlier steps answered (and are billed); this one was stopped
            return UpstreamTimeout(not_called, metadata=metadata)
        return UpstreamTimeout(
            f"No step of {model} answered by the request's deadline"
            f" (GATEWAY_TOTAL_TIMEOUT, {settings.GATEWAY_TOTAL_TIMEOUT:g} s).",
            metadata=metadata,
        )
    message = f"Every step of {model} failed to answer."
    if stopped is not None:
        message += f" {not_called}"
    return UpstreamFailed(message, metadata=metadata)


def request_input(messages: list[JSON]) -> str:
    """The request's last user message: what templates call ``{input}``."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return text_of(message.get("content"))
    return ""
