"""A pipeline request's calls planned before anything is sent (``routing.gateway.pipeline``):
each step's request, candidates and worst-case cost, a judge gate's judge and a parallel
pipeline's judge or synthesiser included, so that the request holds once for all of them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from accounts.keys import AuthenticatedKey
from routerhub.money import ZERO
from routing.gateway.catalog_cache import CatalogSnapshot
from routing.gateway.needs import request_needs
from routing.gateway.pipeline_parallel import aggregate_body, aggregate_template
from routing.gateway.pipeline_steps import (
    JUDGE_MAX_TOKENS,
    Step,
    judge_template,
    request_input,
    template_copies,
    template_fill,
)
from routing.gateway.planning import plan_request
from routing.gateway.token_bounds import output_token_bound, prompt_token_bound, reservation_max
from routing.models import PipelineVersion
from routing.providers.base import JSON, IngressMarks

_BYTES_PER_TOKEN = 4  # an earlier answer's tokens, as prompt bytes of a later call
_NOT_FORWARDED = ("models", "router", "stream", "stream_options")


@dataclass
class Planned:
    """A pipeline request's calls, each with its candidates and worst-case cost."""

    steps: list[Step]
    aggregate: Step | None  # a parallel pipeline's judge or synthesiser

    @property
    def reserved(self) -> Decimal:
        """The hold: every call's worst case, judges and the aggregate's call included."""
        calls = [*self.steps, *(s.judge for s in self.steps if s.judge), self.aggregate]
        return sum((call.reserved for call in calls if call is not None), ZERO)


async def calls_plan(
    body: JSON,
    key: AuthenticatedKey,
    version: PipelineVersion,
    catalog: CatalogSnapshot,
    marks: IngressMarks,
) -> Planned:
    """Every call's candidates and worst-case cost, before anything is sent."""
    steps: list[Step] = []
    previous_bound = 0  # the most tokens the previous step can answer (series)
    input_bound = prompt_token_bound(body)  # what {input} can be
    count = len(version.steps)
    for index, spec in enumerate(version.steps):
        planned_body = step_body(body, spec, index, "", series=version.kind == "series")
        extra = previous_bound * _BYTES_PER_TOKEN * _previous_copies(version, spec, index)
        step = await _call_plan(index, spec, planned_body, key, catalog, extra, marks)
        gate = spec.get("gate") or {}
        if gate.get("type") == "logprob":
            step.body["logprobs"] = True  # asked of the provider; planned without it
        if gate.get("type") == "judge":
            judge_spec = {"model": gate["model"]}
            judge = {"model": gate["model"], "messages": [], "max_tokens": JUDGE_MAX_TOKENS}
            template = judge_template(gate)  # each copy of a field is prompt text: held
            extra = (
                input_bound * template_copies(template, "input")
                + len(template.encode())
                + step.output_bound * _BYTES_PER_TOKEN * template_copies(template, "answer")
            )
            step.judge = await _call_plan(
                count + index, judge_spec, judge, key, catalog, extra, marks
            )
        previous_bound = step.output_bound
        steps.append(step)
    aggregate = None
    options = version.options or {}
    if options.get("aggregate", {}).get("type") in ("judge", "synthesize"):
        spec = options["aggregate"]
        answers = sum(s.output_bound for s in steps) * _BYTES_PER_TOKEN + 16 * len(steps)
        template = aggregate_template(spec)
        extra = (
            input_bound * template_copies(template, "input")
            + len(template.encode())
            + answers * template_copies(template, "answers")
        )
        call = aggregate_body(body, spec)
        aggregate = await _call_plan(
            count, {"model": spec["model"]}, call, key, catalog, extra, marks
        )
    return Planned(steps, aggregate)


async def _call_plan(
    index: int,
    spec: JSON,
    body: JSON,
    key: AuthenticatedKey,
    catalog: CatalogSnapshot,
    extra_prompt_bytes: int,
    marks: IngressMarks,
) -> Step:
    bound = prompt_token_bound(body) + extra_prompt_bytes
    needs = request_needs(body, marks)
    plan = await plan_request(body=body, key=key, catalog=catalog, needs=needs, prompt_bound=bound)
    reserved = reservation_max(body, plan.candidates, bound)
    output = max(output_token_bound(body, c.endpoint) for c in plan.candidates)
    return Step(index, spec, body, plan, reserved, output_bound=output)


def _previous_copies(version: PipelineVersion, spec: JSON, index: int) -> int:
    """How many copies of the previous answer a series step's prompt holds."""
    if version.kind != "series" or index == 0:
        return 0
    return template_copies(_template(spec, index), "previous")


def _template(spec: JSON, index: int) -> str:
    return str(spec.get("template") or ("{previous}" if index else "{input}"))


def step_body(body: JSON, spec: JSON, index: int, previous: str, *, series: bool) -> JSON:
    """The request a step sends: the client's, with the step's model (and, in a series, the
    step's prompt: the system messages kept, then its template as the one user message)."""
    step_body = {name: value for name, value in body.items() if name not in _NOT_FORWARDED}
    step_body["model"] = spec["model"]
    if spec.get("response_format") is not None:
        step_body["response_format"] = spec["response_format"]
    if series and (index > 0 or spec.get("template")):
        messages = body["messages"]
        values = {"input": request_input(messages), "previous": previous}
        prompt = template_fill(_template(spec, index), values)
        system = [m for m in messages if m.get("role") in ("system", "developer")]
        step_body["messages"] = [*system, {"role": "user", "content": prompt}]
    return step_body
