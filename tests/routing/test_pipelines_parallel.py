"""Pipelines, second slice (issue 17): parallel pipelines, judge and logprob gates, streaming,
and child records that sum to the charge even when the balance cannot cover it — through the
official ``openai`` and ``anthropic`` SDKs against the fake upstream."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from billing.models import CreditAccount, LedgerEntry, Reservation, UsageRecord, UsageStep
from billing.services import ledger_post
from routing.fake_upstream.answers import answer_text
from routing.fake_upstream.openai_extras import _token_logprobs
from tests.routing.servers import poll
from tests.routing.world import World, base_catalog, endpoint, model

URL = "/api/v1/pipelines"
PROMPT = "Describe green tea for a shop label"
SMALL = answer_text("gpt-4o-mini", PROMPT)
STRONG = answer_text("gpt-5", PROMPT)


def catalog(world: World, **upstreams: str) -> None:
    """The base catalog plus ``test/<name>`` models on OpenAI-style endpoints of the fake."""
    data = base_catalog(world.fake_url)
    for name, upstream in upstreams.items():
        data["models"].append(model(f"test/{name}"))
        data["endpoints"].append(endpoint(f"test/{name}", "fake-openai-b", upstream, "5", "20"))
    world.catalog(data)


def created(world: World, slug: str, kind: str, steps: list[dict[str, Any]], **more: Any) -> None:
    response = world.pipeline_create(slug, kind, steps, **more)
    assert response.status_code == 201, response.content


def ask(world: World, slug: str, **more: Any) -> Any:
    return world.openai_client().chat.completions.create(
        model=f"pipeline/{slug}", messages=[{"role": "user", "content": PROMPT}], **more
    )


def records(world: World, generation_id: str) -> list[tuple[int, str, str, str]]:
    world.usage_record(generation_id)  # settled: its children are written with it
    rows = UsageStep.objects.filter(generation_id=generation_id).order_by("step")
    return [(s.step, s.model, s.status, s.gate) for s in rows]


def assert_children_sum_to_the_charge(
    world: World, generation_id: str, balance: str = "10"
) -> None:
    record = world.usage_record(generation_id)
    children = UsageStep.objects.filter(generation_id=generation_id)
    assert sum((c.cost for c in children), Decimal(0)) == record.cost > 0
    assert LedgerEntry.objects.get(idempotency_key=f"usage:{generation_id}").amount == -record.cost
    hold = Reservation.objects.get(generation_id=generation_id)
    assert hold.amount >= record.cost and hold.state == "settled"
    account = CreditAccount.objects.get(organization=world.organization)
    assert account.balance == Decimal(balance) - record.cost


# --- parallel ------------------------------------------------------------------------------------


def test_a_majority_vote_serves_the_common_answer_and_bills_a_timed_out_branch_its_prompt(
    world: World,
) -> None:
    catalog(world, twin="gpt-4o-mini", slow="gpt-4o-mini@timeout")
    branches = [{"model": m} for m in ("test/claude", "test/gpt", "test/twin", "test/slow")]
    created(world, "vote", "parallel", branches, aggregate={"type": "majority"},
            branch_timeout_s=1)  # fmt: skip

    completion = ask(world, "vote")

    assert completion.choices[0].message.content == SMALL  # two of the three answers agree
    assert completion.model == "test/gpt"
    pipeline = completion.model_extra["pipeline"]
    assert pipeline["aggregate"] == {"type": "majority", "votes": 2, "answered": 3}
    assert records(world, completion.id) == [
        (0, "test/claude", "succeeded", "not_chosen"),
        (1, "test/gpt", "succeeded", "chosen"),
        (2, "test/twin", "succeeded", "not_chosen"),
        (3, "test/slow", "timed_out", "timeout"),
    ]
    # The provider had the prompt when the branch's timeout stopped it: billed, as a prompt
    # (estimated: nothing came back), never an answer.
    slow = UsageStep.objects.get(generation_id=completion.id, step=3)
    assert slow.prompt_tokens > 0 and slow.cost > 0 and slow.completion_tokens == 0
    assert slow.latency_ms == 1000
    assert completion.usage.model_extra["cost"] == pytest.approx(
        sum(s["cost"] for s in pipeline["steps"])
    )
    assert_children_sum_to_the_charge(world, completion.id)


def test_fastest_serves_the_first_answer_and_cancels_the_others_billing_their_prompts(
    world: World,
) -> None:
    catalog(world, stuck="gpt-5@timeout")
    branches = [{"model": "test/stuck"}, {"model": "test/gpt"}]
    created(world, "race", "parallel", branches, aggregate={"type": "fastest"})

    completion = ask(world, "race")

    assert completion.choices[0].message.content == SMALL
    assert records(world, completion.id) == [
        (0, "test/stuck", "cancelled", "cancelled"),
        (1, "test/gpt", "succeeded", "chosen"),
    ]
    stuck = UsageStep.objects.get(generation_id=completion.id, step=0)
    assert stuck.prompt_tokens > 0 and stuck.cost > 0 and stuck.completion_tokens == 0
    assert_children_sum_to_the_charge(world, completion.id)


def test_first_valid_skips_answers_that_fail_its_gate(world: World) -> None:
    catalog(world, strong="gpt-5")
    branches = [{"model": "test/gpt"}, {"model": "test/strong",
                                        "response_format": {"type": "json_object"}}]  # fmt: skip
    created(world, "valid", "parallel", branches,
            aggregate={"type": "first_valid", "gate": {"type": "json"}})  # fmt: skip

    completion = ask(world, "valid")

    assert completion.model == "test/strong"
    assert completion.model_extra["pipeline"]["passed"] is True
    assert_children_sum_to_the_charge(world, completion.id)


def test_a_judge_picks_a_branch_and_its_garbage_falls_back_to_the_first(world: World) -> None:
    catalog(world, judge="gpt-4o-mini@reply=2", garbage="gpt-4o-mini@reply=banana")
    branches = [{"model": "test/claude"}, {"model": "test/gpt"}]
    for judge in ("judge", "garbage"):
        created(world, judge, "parallel", branches,
                aggregate={"type": "judge", "model": f"test/{judge}"})  # fmt: skip

    picked, garbage = ask(world, "judge"), ask(world, "garbage")

    assert picked.choices[0].message.content == SMALL  # "2": the second branch
    assert records(world, picked.id)[2] == (2, "test/judge", "succeeded", "judge")
    assert picked.model_extra["pipeline"]["aggregate"]["choice"] == 1
    judge_prompt = world.upstream_requests("/v1/chat/completions")[1]["body"]["messages"][0]
    assert f"[2] {SMALL}" in judge_prompt["content"]
    assert garbage.choices[0].message.content == answer_text("claude-sonnet-4-5", PROMPT)
    assert records(world, garbage.id)[2] == (2, "test/garbage", "succeeded", "judge_garbage")
    assert garbage.model_extra["pipeline"]["aggregate"]["garbage"] is True
    for completion in (picked, garbage):
        record = world.usage_record(completion.id)
        children = UsageStep.objects.filter(generation_id=completion.id)
        assert sum((c.cost for c in children), Decimal(0)) == record.cost > 0


def test_a_synthesiser_writes_the_served_answer_from_every_branch(world: World) -> None:
    catalog(world, writer="gpt-5")
    branches = [{"model": "test/claude"}, {"model": "test/gpt"}]
    created(world, "fused", "parallel", branches,
            aggregate={"type": "synthesize", "model": "test/writer"})  # fmt: skip

    completion = ask(world, "fused")

    prompt = world.upstream_requests("/v1/chat/completions")[-1]["body"]["messages"][0]["content"]
    assert completion.choices[0].message.content == answer_text("gpt-5", prompt)
    assert completion.model == "test/writer"
    assert [r[3] for r in records(world, completion.id)] == [
        "not_chosen",
        "not_chosen",
        "synthesize",
    ]
    assert_children_sum_to_the_charge(world, completion.id)


def test_parallel_definitions_are_checked_at_creation(world: World, settings: Any) -> None:
    settings.PIPELINE_MAX_BRANCHES = 2
    three = [{"model": "test/gpt"}] * 3
    too_many = world.pipeline_create("wide", "parallel", three, aggregate={"type": "majority"})
    assert too_many.status_code == 400
    assert "at most 2 branches (PIPELINE_MAX_BRANCHES)" in str(too_many.json())
    no_aggregate = world.pipeline_create("bare", "parallel", [{"model": "test/gpt"}])
    assert "aggregate.type is required" in str(no_aggregate.json())
    judge = world.pipeline_create("j", "parallel", [{"model": "test/gpt"}],
                   aggregate={"type": "judge", "model": "test/nope"})  # fmt: skip
    assert "unknown model 'test/nope'" in str(judge.json())
    gated = world.pipeline_create("g", "parallel", [{"model": "test/gpt", "gate": {"type": "json"}}],
                   aggregate={"type": "fastest"})  # fmt: skip
    assert "only cascade steps have gates" in str(gated.json())
    cascade = world.pipeline_create(
        "c", "cascade", [{"model": "test/gpt"}], aggregate={"type": "fastest"}
    )
    assert "only parallel pipelines" in str(cascade.json())


# --- judge and logprob gates --------------------------------------------------------------------


JUDGE_CASES = [  # the judge's reply, the gate's min_score, the step's gate, the answer served
    ("FAIL", 0.5, "failed", STRONG),
    ("banana!", 0.5, "judge_garbage", STRONG),
    ("PASS.", 0.5, "passed", SMALL),
    ("0.9", 0.8, "passed", SMALL),
    ("0.7", 0.8, "failed", STRONG),
]


def test_a_judge_gate_escalates_on_fail_or_garbage_and_bills_its_call(world: World) -> None:
    catalog(world, strong="gpt-5", **{f"judge{i}": f"gpt-4o-mini@reply={verdict}"
                                      for i, (verdict, *_) in enumerate(JUDGE_CASES)})  # fmt: skip
    for i, (_, min_score, _, _) in enumerate(JUDGE_CASES):
        judged = {"type": "judge", "model": f"test/judge{i}", "min_score": min_score}
        created(world, f"judged{i}", "cascade",
                [{"model": "test/gpt", "gate": judged}, {"model": "test/strong"}])  # fmt: skip

    for i, (verdict, _, gate, served) in enumerate(JUDGE_CASES):
        sent_before = len(world.upstream_requests("/v1/chat/completions"))
        completion = ask(world, f"judged{i}")

        assert completion.choices[0].message.content == served, verdict
        steps = completion.model_extra["pipeline"]["steps"]
        assert [(s["step"], s["gate"]) for s in steps][:2] == [(0, gate), (2, "judge")], verdict
        assert steps[1]["judges_step"] == 0 and steps[1]["verdict"] == verdict
        judge = world.upstream_requests("/v1/chat/completions")[sent_before + 1]["body"]
        assert SMALL in judge["messages"][0]["content"] and judge["max_tokens"] == 16
        record = world.usage_record(completion.id)
        children = UsageStep.objects.filter(generation_id=completion.id)
        assert len(children) == len(steps)
        assert sum((c.cost for c in children), Decimal(0)) == record.cost > 0


def test_a_logprob_gate_asks_for_logprobs_and_escalates_when_unsure_or_undecidable(
    world: World,
) -> None:
    catalog(world, strong="gpt-5")
    mean = sum(t["logprob"] for t in _token_logprobs(SMALL, 0)) / len(_token_logprobs(SMALL, 0))
    for slug, first, minimum in [("sure", "test/gpt", mean - 0.01),
                                 ("unsure", "test/gpt", mean + 0.01),
                                 ("blind", "test/claude", -5.0)]:  # fmt: skip
        gate = {"type": "logprob", "min_mean": minimum}
        created(world, slug, "cascade", [{"model": first, "gate": gate}, {"model": "test/strong"}])

    sure, unsure, blind = ask(world, "sure"), ask(world, "unsure"), ask(world, "blind")

    assert sure.choices[0].message.content == SMALL
    assert sure.choices[0].logprobs is None  # asked of the provider, not by the client
    assert world.upstream_requests("/v1/chat/completions")[0]["body"]["logprobs"] is True
    assert sure.model_extra["pipeline"]["steps"][0]["mean_logprob"] == pytest.approx(mean)
    assert unsure.choices[0].message.content == STRONG
    assert unsure.model_extra["pipeline"]["steps"][0]["gate"] == "failed"
    assert blind.choices[0].message.content == STRONG
    assert blind.model_extra["pipeline"]["steps"][0]["gate"] == "undecidable"
    for completion in (sure, unsure, blind):
        record = world.usage_record(completion.id)
        children = UsageStep.objects.filter(generation_id=completion.id)
        assert sum((c.cost for c in children), Decimal(0)) == record.cost > 0


def test_a_catastrophic_regex_fails_its_gate_without_holding_the_gateway(
    world: World, settings: Any
) -> None:
    settings.PIPELINE_REGEX_TIMEOUT = 0.3
    catalog(world, strong="gpt-5")
    gate = {"type": "regex", "pattern": r"(\w+\s?)+$"}  # exponential on a sentence ending in "."
    created(world, "regex", "cascade", [{"model": "test/gpt", "gate": gate},
                                        {"model": "test/strong"}])  # fmt: skip
    created(world, "plain", "cascade", [{"model": "test/gpt"}])
    client = world.openai_client()

    started = time.monotonic()
    completion = ask(world, "regex")
    other = client.chat.completions.create(
        model="pipeline/plain", messages=[{"role": "user", "content": PROMPT}]
    )

    assert time.monotonic() - started < 30  # not the hours the backtracking would take
    assert completion.choices[0].message.content == STRONG
    assert completion.model_extra["pipeline"]["steps"][0]["gate"] == "gate_timeout"
    assert other.choices[0].message.content == SMALL
    matching = {"type": "regex", "pattern": r"green tea"}
    created(world, "matching", "cascade", [{"model": "test/gpt", "gate": matching},
                                           {"model": "test/strong"}])  # fmt: skip
    assert ask(world, "matching").choices[0].message.content == SMALL


# --- streaming ------------------------------------------------------------------------------------


def stream_text(world: World, slug: str) -> tuple[str, Any]:
    chunks = list(ask(world, slug, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks[-1]


def test_a_cascade_with_no_post_call_gate_streams_its_first_step_live(world: World) -> None:
    created(world, "live", "cascade", [{"model": "test/gpt"}])

    text, tail = stream_text(world, "live")

    assert text == SMALL
    assert world.upstream_requests("/v1/chat/completions")[0]["body"]["stream"] is True
    assert tail.usage.model_extra["cost"] > 0
    pipeline = tail.model_extra["pipeline"]
    assert [(s["model"], s["gate"]) for s in pipeline["steps"]] == [("test/gpt", "none")]
    assert_children_sum_to_the_charge(world, tail.id)
    assert world.usage_record(tail.id).streamed is True


BUFFERED = [  # kind, steps, more of the definition, the answer served
    ("cascade", [{"model": "test/gpt", "gate": {"type": "json"}}, {"model": "test/strong"}],
     {}, STRONG),
    ("series", [{"model": "test/gpt"}, {"model": "test/strong", "template": "{previous}"}],
     {}, answer_text("gpt-5", SMALL)),
    ("parallel", [{"model": "test/gpt"}, {"model": "test/strong"}],
     {"aggregate": {"type": "majority"}}, SMALL),
]  # fmt: skip


def test_gated_series_and_parallel_pipelines_stream_buffered(world: World) -> None:
    catalog(world, strong="gpt-5")
    for kind, steps, more, _ in BUFFERED:
        created(world, kind, kind, steps, **more)

    for kind, _, _, served in BUFFERED:
        text, tail = stream_text(world, kind)

        assert text == served, kind
        assert tail.usage.model_extra["cost"] == pytest.approx(
            sum(s["cost"] for s in tail.model_extra["pipeline"]["steps"])
        )
        assert tail.model_extra["pipeline"]["kind"] == kind
        record = world.usage_record(tail.id)
        children = UsageStep.objects.filter(generation_id=tail.id)
        assert sum((c.cost for c in children), Decimal(0)) == record.cost > 0
    assert all(r["body"].get("stream") is not True for r in world.upstream_requests())


def test_anthropic_and_responses_streams_of_a_pipeline_are_well_formed(world: World) -> None:
    catalog(world, strong="gpt-5")
    created(world, "gated", "cascade",
            [{"model": "test/gpt", "gate": {"type": "json"}}, {"model": "test/strong"}])  # fmt: skip
    messages = world.anthropic_client()

    with messages.messages.stream(model="pipeline/gated", max_tokens=300,
                                  messages=[{"role": "user", "content": PROMPT}]) as stream:  # fmt: skip
        message = stream.get_final_message()

    assert message.content[0].text == STRONG  # type: ignore[union-attr]
    assert message.usage.output_tokens > 0
    assert_children_sum_to_the_charge(world, message.id)
    events = list(world.openai_client().responses.create(
        model="pipeline/gated", input=PROMPT, stream=True))  # fmt: skip
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == STRONG
    assert done.response.model_extra["pipeline"]["kind"] == "cascade"


# --- billing -------------------------------------------------------------------------------------


def test_child_records_sum_to_a_charge_the_balance_could_not_cover(
    world: World, settings: Any
) -> None:
    settings.REDIS_URL = world.redis_url
    catalog(world, overrun="gpt-4o-mini@report_completion=50000")
    created(world, "dear", "series", [{"model": "test/gpt"},
                                       {"model": "test/overrun", "template": "{previous}"}])  # fmt: skip
    ledger_post(organization=world.organization, kind="adjustment", amount=Decimal("-9.95"),
                idempotency_key="leave-five-cents")  # fmt: skip

    completion = ask(world, "dear", max_tokens=10)

    assert completion.usage.model_extra["cost"] > 0.05
    record = world.usage_record(completion.id)
    assert record.cost == Decimal("0.05") and "shortfall" in record.flag_list
    children = list(UsageStep.objects.filter(generation_id=completion.id).order_by("step"))
    assert sum((c.cost for c in children), Decimal(0)) == Decimal("0.05")
    assert children[0].cost == Decimal(str(completion.model_extra["pipeline"]["steps"][0]["cost"]))
    assert CreditAccount.objects.get(organization=world.organization).balance == 0


def test_a_timed_out_branch_keeps_its_latency_when_the_client_leaves(
    world: World, settings: Any
) -> None:
    """The client leaves while first_valid's gate still reads the first answer, after the slow
    branch's timeout: that branch's record keeps its latency (the timeout), as when the pipeline
    ends by itself; before, billing its prompt overwrote it with the whole request's time."""
    settings.PIPELINE_REGEX_TIMEOUT = 5.0  # the gate's catastrophic search runs this long
    catalog(world, evil="gpt-4o-mini@reply=" + "a" * 28 + "!", slow="gpt-4o-mini@timeout")
    gate = {"type": "regex", "pattern": "^(a+)+$"}
    created(world, "stalled", "parallel", [{"model": "test/evil"}, {"model": "test/slow"}],
            aggregate={"type": "first_valid", "gate": gate}, branch_timeout_s=1)  # fmt: skip

    stalled = {"model": "pipeline/stalled", "messages": [{"role": "user", "content": PROMPT}]}
    world.client_leaves("/v1/chat/completions", stalled, after=2.5)

    record = poll(lambda: UsageRecord.objects.filter(organization=world.organization).first())
    assert record.error_type == "client_disconnected"
    slow = UsageStep.objects.get(generation_id=record.generation_id, step=1)
    assert (slow.status, slow.latency_ms) == ("timed_out", 1000)
    assert slow.prompt_tokens > 0 and slow.cost > 0
