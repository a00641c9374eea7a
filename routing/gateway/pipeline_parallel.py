"""A parallel pipeline (``routing.gateway.pipeline``): every branch is called at once, each
within its timeout (the pipeline's ``branch_timeout_s``, else ``PIPELINE_BRANCH_TIMEOUT``), and
one answer is served, chosen by the aggregate:

- ``fastest``: the first branch to answer; the others are cancelled.
- ``first_valid``: the first answer (in the order they arrive) that passes the aggregate's gate
  (``non_empty`` by default); the others are cancelled. None passes: the first answer is
  served with ``pipeline.passed: false``.
- ``majority``: the answer most branches agree on, compared as ``answer_normalised`` makes
  them (stripped, case-folded, whitespace collapsed, trailing punctuation removed); a tie goes
  to the group whose first branch comes first in the definition; that branch's answer is
  served as it came.
- ``judge``: a judge model reads the numbered answers and names the best by its number; a
  reply without a number of an answered branch is garbage: the first answered branch is served
  and ``pipeline.aggregate.garbage`` is true.
- ``synthesize``: a synthesiser model reads the answers and writes the one served; if it
  fails to answer, the first answered branch is served.

Billing: each branch's call is a child record, accounted once, in the definition's order. A
branch is priced only when its whole answer has arrived, so a branch that timed out (status
``timed_out``) or was cancelled once the aggregate had decided (``cancelled``) is billed 0:
nothing came back, and the provider's count of a call it never finished never reaches us.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter

from django.conf import settings

from routing.gateway import attempts
from routing.gateway.attempts import deadline_left
from routing.gateway.exchange import Exchange, bill, call_abandoned
from routing.gateway.pipeline_steps import (
    JUDGE_MAX_TOKENS,
    PASSED,
    Outcome,
    Step,
    all_failed,
    child_exchange,
    gate_label,
    judge_body,
    request_input,
    step_account,
    step_call,
    step_held_for,
    step_run,
    template_fill,
)
from routing.gateway.usage_estimate import partial_usage
from routing.pipeline_gates import GATE_MAX_CHARS, answer_normalised
from routing.providers.base import JSON

_TEMPLATES = {
    "judge": "Question:\n{input}\n\nCandidate answers:\n{answers}\n\n"
    "Reply with only the number of the best answer.",
    "synthesize": "Question:\n{input}\n\nAnswers from several models:\n{answers}\n\n"
    "Write the single best answer to the question, keeping what is right in each.",
}
_NUMBER = re.compile(r"\d+")
_EARLY = ("fastest", "first_valid")  # aggregates that stop at the first acceptable answer


def aggregate_template(spec: JSON) -> str:
    return str(spec.get("template") or _TEMPLATES[spec["type"]])


def aggregate_body(body: JSON, spec: JSON) -> JSON:
    """The judge's or synthesiser's request (its prompt is filled in once the answers are in):
    a judge replies with a number; a synthesiser answers within the client's max_tokens."""
    call: JSON = {"model": spec["model"], "messages": []}
    if spec["type"] == "judge":
        return call | {"max_tokens": JUDGE_MAX_TOKENS}
    for name in ("max_tokens", "max_completion_tokens"):
        if body.get(name) is not None:
            call[name] = body[name]
    return call


async def parallel_run(
    ex: Exchange, steps: list[Step], options: JSON, aggregate: Step | None
) -> tuple[Outcome, JSON]:
    """Run every branch, account each once, and return the served answer and the pipeline
    object's ``aggregate`` (and ``passed`` for first_valid)."""
    spec = options["aggregate"]
    timeout = options.get("branch_timeout_s") or settings.PIPELINE_BRANCH_TIMEOUT
    if aggregate is not None:
        # The judge or synthesiser shares the request's deadline: twice CALL_MIN_SECONDS of it
        # is kept for that call (a stored ``branch_timeout_s`` may be the whole deadline).
        kept = deadline_left(ex) - 2 * attempts.CALL_MIN_SECONDS
        timeout = min(timeout, max(kept, attempts.CALL_MIN_SECONDS))
    children = [child_exchange(ex, step, step.body) for step in steps]
    tasks = [asyncio.ensure_future(_branch(child, timeout)) for child in children]
    try:
        arrived, chosen = await _collect(tasks, spec)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    outcomes = [_ended(task, child) for task, child in zip(tasks, children, strict=True)]
    answered = [i for i, outcome in enumerate(outcomes) if outcome.completion is not None]
    if not answered:
        _account_branches(ex, steps, outcomes, None)
        raise all_failed(ex)
    kind = spec["type"]
    extra: JSON = {"aggregate": {"type": kind}}
    if kind in _EARLY:
        served = chosen if chosen is not None else next(i for i in arrived if i in answered)
        if kind == "first_valid":
            extra["passed"] = chosen is not None
    elif kind == "majority":
        served, votes = _vote(outcomes, answered)
        extra["aggregate"] |= {"votes": votes, "answered": len(answered)}
    else:
        assert aggregate is not None  # planned with the pipeline
        _account_branches(ex, steps, outcomes, None)
        return await _aggregate_call(ex, aggregate, spec, steps, outcomes, answered)
    _account_branches(ex, steps, outcomes, served)
    return outcomes[served], extra


async def _branch(child: Exchange, timeout: float) -> Outcome:
    try:
        async with asyncio.timeout(timeout):
            return await step_call(child)
    except TimeoutError:
        child.draft.status, child.draft.latency_ms = "timed_out", int(timeout * 1000)
        return Outcome(child, None)


async def _collect(tasks: list[asyncio.Task[Outcome]], spec: JSON) -> tuple[list[int], int | None]:
    """Wait for the branches; return the order they ended in and, for fastest and first_valid,
    the branch chosen (None if none was acceptable) as soon as it is known."""
    arrived: list[int] = []
    pending: set[asyncio.Task[Outcome]] = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in sorted(done, key=tasks.index):
            index = tasks.index(task)
            arrived.append(index)
            outcome = task.result()
            if spec["type"] in _EARLY and outcome.completion is not None:
                gate = spec.get("gate")
                if gate is None or await gate_label(gate, outcome, {}) == PASSED:
                    return arrived, index
    return arrived, None


def _ended(task: asyncio.Task[Outcome], child: Exchange) -> Outcome:
    """A branch's outcome; one cancelled before it answered has none (and costs nothing)."""
    if task.cancelled():
        child.draft.status = "cancelled"
        return Outcome(child, None)
    return task.result()


def _account_branches(
    ex: Exchange, steps: list[Step], outcomes: list[Outcome], served: int | None
) -> None:
    for index, (step, outcome) in enumerate(zip(steps, outcomes, strict=True)):
        status = outcome.ex.draft.status
        if outcome.completion is None:
            gate = {"timed_out": "timeout", "cancelled": "cancelled"}.get(status, "no_answer")
            if gate != "no_answer":  # stopped by the pipeline while a provider had its prompt
                latency = outcome.ex.draft.latency_ms
                call_abandoned(outcome.ex)
                bill(outcome.ex, partial_usage(outcome.ex), status=status)
                outcome.ex.draft.latency_ms = latency
        else:
            gate = "chosen" if index == served else "not_chosen"
        step_account(ex, outcome.ex, step, gate)


def _vote(outcomes: list[Outcome], answered: list[int]) -> tuple[int, int]:
    """The branch whose answer most answered branches share, and how many share it."""
    keys = {i: answer_normalised(outcomes[i].text) for i in answered}
    counts = Counter(keys.values())
    winner = max(answered, key=lambda i: (counts[keys[i]], -i))
    return winner, counts[keys[winner]]


async def _aggregate_call(
    ex: Exchange,
    aggregate: Step,
    spec: JSON,
    steps: list[Step],
    outcomes: list[Outcome],
    answered: list[int],
) -> tuple[Outcome, JSON]:
    """Ask the judge (which answer?) or the synthesiser (write the answer); its call is a child
    record numbered after the branches. The branches are already accounted."""
    answers = "\n\n".join(f"[{i + 1}] {outcomes[i].text[:GATE_MAX_CHARS]}" for i in answered)
    values = {"input": request_input(ex.body["messages"]), "answers": answers}
    body = judge_body(aggregate.body, template_fill(aggregate_template(spec), values))
    aggregate = await step_held_for(ex, aggregate, body, later=())  # the request's last call
    called = await step_run(ex, aggregate, body)
    record = step_account(ex, called.ex, aggregate, spec["type"])
    info: JSON = {"type": spec["type"]}
    served = answered[0]  # when the judge's reply is garbage, or the synthesiser has none
    if spec["type"] == "synthesize":
        if called.completion is not None:
            return called, {"aggregate": info}
        record["gate"], info["fallback"] = "no_answer", served
    else:
        choice = _judge_choice(called.text, answered)
        info["verdict"] = called.text[:200]
        if choice is None:
            record["gate"] = "judge_garbage" if called.completion else "no_answer"
            info["garbage"] = True
        served = info["choice"] = served if choice is None else choice
    _mark_chosen(ex, steps, served)
    return outcomes[served], {"aggregate": info}


def _judge_choice(reply: str, answered: list[int]) -> int | None:
    """The branch a judge's reply names (its first number, 1-based), if it answered."""
    match = _NUMBER.search(reply[:200])
    if match is None:
        return None
    index = int(match[0]) - 1
    return index if index in answered else None


def _mark_chosen(ex: Exchange, steps: list[Step], served: int) -> None:
    for record in ex.draft.steps:
        if record["step"] < len(steps) and record["gate"] in ("chosen", "not_chosen"):
            record["gate"] = "chosen" if record["step"] == served else "not_chosen"
