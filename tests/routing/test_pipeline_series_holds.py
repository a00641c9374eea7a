"""A series step's hold covers the prompt it sends: the previous answer, held at 4 bytes a
token when planned, may be tokens of many more bytes (the fake's word of 150 letters is one
token), and a provider counting a token per byte (``x@tokenizer=bytes``) bills that. A judge
gate's ``{answer}`` and a parallel judge's or synthesiser's ``{answers}`` are held by the same
rule (``pipeline_steps.step_held_for``). Served through the ``openai`` SDK against the fake
upstream."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import openai
import pytest
from django.utils import timezone

from accounts import key_lineage
from accounts.models import KeyScope
from billing.models import Reservation, UsageStep
from routerhub.money import money
from tests.factories import child_key_make, key_client, key_row_make
from tests.routing.test_pipelines import DESCRIBE
from tests.routing.world import World, base_catalog, endpoint, model

LONG_WORD = "a" * 150
LONG_PROMPT = DESCRIBE + " Please keep it short." * 100  # held at its bytes, counted ~1 in 4


def _catalog(world: World, *endpoints: tuple[str, str, str, str, str]) -> None:
    """The base catalog and a model per ``(provider, model, upstream, input, output)``."""
    data = base_catalog(world.fake_url)
    for provider, name, upstream, input_, output in endpoints:
        data["models"].append(model(name))
        data["endpoints"].append(endpoint(name, provider, upstream, input_, output))
    world.catalog(data)


def _long_answers_catalog(world: World) -> None:
    """``test/long-tokens`` answers 8 tokens of 150 bytes; ``test/bytes`` counts a token a byte."""
    _catalog(
        world,
        ("fake-openai", "test/long-tokens", f"gpt-5@reply={LONG_WORD},repeat=8", "5", "20"),
        ("fake-openai-b", "test/bytes", "gpt-4o-mini@tokenizer=bytes", "1", "2"),
    )


def _series(world: World) -> None:
    _long_answers_catalog(world)
    steps = [{"model": "test/long-tokens"}, {"model": "test/bytes"}]
    assert world.pipeline_create("long", "series", steps).status_code == 201


def test_a_step_fed_an_answer_of_long_tokens_is_charged_within_its_hold(world: World) -> None:
    _series(world)

    completion = world.openai_client().chat.completions.create(
        model="pipeline/long", max_tokens=8, messages=[{"role": "user", "content": LONG_PROMPT}]
    )

    record = world.usage_record(completion.id)
    second = UsageStep.objects.get(generation_id=completion.id, step=1)
    assert second.prompt_tokens > len(LONG_WORD) * 8  # a token per byte of the previous answer
    assert "over_hold" not in record.flag_list
    assert Reservation.objects.get(generation_id=completion.id).amount >= record.cost


def test_a_step_the_requests_hold_cannot_cover_is_called_and_flagged(world: World) -> None:
    _series(world)

    completion = world.openai_client().chat.completions.create(
        model="pipeline/long", max_tokens=8, messages=[{"role": "user", "content": DESCRIBE}]
    )

    assert len(world.upstream_requests("/v1/chat/completions")) == 2
    record = world.usage_record(completion.id)
    assert record.cost > 0 and "over_hold" in record.flag_list


def _steps(world: World, *endpoints: tuple[str, str, str, str]) -> None:
    """``pipeline/series``: a step per ``(model, upstream, input, output)``, in that order."""
    _catalog(world, *(("fake-openai", *each) for each in endpoints))
    steps = [{"model": name} for name, *_ in endpoints]
    assert world.pipeline_create("series", "series", steps).status_code == 201


def _series_asked(world: World, prompt: str, max_tokens: int = 8) -> str:
    """``pipeline/series`` asked ``prompt`` through the ``openai`` SDK: its generation id."""
    messages = [{"role": "user", "content": prompt}]
    completion = world.openai_client().chat.completions.create(
        model="pipeline/series", max_tokens=max_tokens, messages=messages
    )
    return completion.id


def test_a_step_fed_ordinary_prose_that_hit_max_tokens_is_served(world: World) -> None:
    prose = "Green_tea_leaves_give_a_mild_taste_and_a_sweet_finish."
    _steps(
        world,
        ("test/prose", f"gpt-4o-mini@reply={prose},repeat=40", "1", "2"),
        ("test/priced", "gpt-4o-mini", "5", "10"),
    )

    generation_id = _series_asked(world, DESCRIBE, max_tokens=60)

    assert len(world.upstream_requests("/v1/chat/completions")) == 2
    assert world.usage_record(generation_id).cost > 0


def test_a_step_never_borrows_what_a_later_step_is_held_for(world: World) -> None:
    _steps(
        world,
        ("test/long-tokens", f"gpt-5@reply={LONG_WORD},repeat=8", "5", "20"),
        ("test/bytes", "gpt-4o-mini@tokenizer=bytes", "1", "2"),
        ("test/dear", "gpt-5", "200", "800"),  # a hold that would cover step 2 many times
    )

    generation_id = _series_asked(world, DESCRIBE)

    assert len(world.upstream_requests("/v1/chat/completions")) == 3
    assert "over_hold" in world.usage_record(generation_id).flag_list  # step 2, on its own share


def test_a_step_never_borrows_what_earlier_steps_spent(world: World) -> None:
    _steps(
        world,
        # a token per byte of its prompt, at a price whose hold dwarfs step 2's need: spent whole
        ("test/spent", f"gpt-5@reply={LONG_WORD},repeat=8,tokenizer=bytes", "200", "800"),
        ("test/bytes", "gpt-4o-mini@tokenizer=bytes", "50", "100"),
    )

    generation_id = _series_asked(world, LONG_PROMPT)

    assert len(world.upstream_requests("/v1/chat/completions")) == 2
    assert "over_hold" in world.usage_record(generation_id).flag_list


def test_a_step_the_balance_cannot_cover_is_refused_and_recorded(world: World) -> None:
    _steps(
        world,
        ("test/long-tokens", f"gpt-5@reply={LONG_WORD},repeat=8", "5", "20"),
        ("test/dearest", "gpt-4o-mini@tokenizer=bytes", "20000", "20000"),
    )

    with pytest.raises(openai.APIStatusError) as raised:
        _series_asked(world, DESCRIBE)

    assert raised.value.status_code == 402
    assert "step 2 (test/dearest) of pipeline/series" in raised.value.message
    assert len(world.upstream_requests("/v1/chat/completions")) == 1
    generation_id = raised.value.body["metadata"]["generation_id"]  # type: ignore[index]
    assert world.usage_record(generation_id).cost > 0  # step 1 is billed
    refused = UsageStep.objects.get(generation_id=generation_id, step=1)
    assert (refused.gate, refused.cost) == ("not_called", 0)


def test_a_judge_the_balance_cannot_cover_fails_its_gate_and_the_cascade_escalates(
    world: World,
) -> None:
    """A judge gate's judge whose prompt (the long answer) the credits beyond every hold cannot
    cover is not called: the judged step's gate is ``judge_failed`` and the next step, which
    kept its hold, answers (before, a 402 after step 1 was billed, step 2 never called)."""
    _catalog(
        world,
        ("fake-openai", "test/long-tokens", f"gpt-5@reply={LONG_WORD},repeat=8", "5", "20"),
        ("fake-openai-b", "test/dearest", "gpt-4o-mini@tokenizer=bytes", "20000", "20000"),
    )
    gate = {"type": "judge", "model": "test/dearest", "min_score": 0.5}
    steps = [{"model": "test/long-tokens", "gate": gate}, {"model": "test/long-tokens"}]
    assert world.pipeline_create("judged", "cascade", steps).status_code == 201

    completion = world.openai_client().chat.completions.create(
        model="pipeline/judged", max_tokens=8, messages=[{"role": "user", "content": DESCRIBE}]
    )

    pipeline = completion.model_extra["pipeline"]  # type: ignore[index]
    assert [s["gate"] for s in pipeline["steps"]] == ["judge_failed", "not_called", "none"]
    assert pipeline["steps"][1]["judges_step"] == 0
    assert [s["step"] for s in pipeline["steps"]] == [0, 2, 1]
    assert len(world.upstream_requests("/v1/chat/completions")) == 2  # the judge was not called
    assert world.usage_record(completion.id).cost > 0  # waits for the record: both steps
    judge = UsageStep.objects.get(generation_id=completion.id, step=2)
    assert (judge.gate, judge.cost) == ("not_called", 0)


def _assert_within_hold(world: World, generation_id: str) -> None:
    record = world.usage_record(generation_id)
    assert "over_hold" not in record.flag_list, (record.cost, record.flags)
    assert Reservation.objects.get(generation_id=generation_id).amount >= record.cost


def test_a_judge_fed_an_answer_of_long_tokens_is_charged_within_its_hold(world: World) -> None:
    """A judge gate's ``{answer}`` is held as the series' ``{previous}`` is: at its bytes once
    known (before, at 4 bytes a token: the judge's charge went over its hold)."""
    _long_answers_catalog(world)
    gate = {"type": "judge", "model": "test/bytes", "min_score": 0.5}
    steps = [{"model": "test/long-tokens", "gate": gate}, {"model": "test/long-tokens"}]
    assert world.pipeline_create("judged", "cascade", steps).status_code == 201

    completion = world.openai_client().chat.completions.create(
        model="pipeline/judged", max_tokens=8, messages=[{"role": "user", "content": LONG_PROMPT}]
    )

    _assert_within_hold(world, completion.id)  # waits for the record
    judge = UsageStep.objects.get(generation_id=completion.id, step=2)  # n + the judged step
    assert judge.prompt_tokens > len(LONG_WORD) * 8  # a token per byte of the answer judged


def test_a_synthesiser_fed_answers_of_long_tokens_is_charged_within_its_hold(
    world: World,
) -> None:
    """A parallel aggregate's ``{answers}`` is held at their bytes once known (before, at 4 bytes
    a token: the synthesiser's charge went over its hold)."""
    _long_answers_catalog(world)
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    spec = {
        "slug": "synth",
        "kind": "parallel",
        "steps": [{"model": "test/long-tokens"}, {"model": "test/long-tokens"}],
        "aggregate": {"type": "synthesize", "model": "test/bytes"},
    }
    assert admin.post("/api/v1/pipelines", spec, format="json").status_code == 201

    completion = world.openai_client().chat.completions.create(
        model="pipeline/synth", max_tokens=8, messages=[{"role": "user", "content": LONG_PROMPT}]
    )

    _assert_within_hold(world, completion.id)  # waits for the record
    synthesiser = UsageStep.objects.get(generation_id=completion.id, step=2)
    assert synthesiser.prompt_tokens > 2 * len(LONG_WORD) * 8  # both answers, a token per byte


ASK = {
    "model": "pipeline/long",
    "max_tokens": 8,
    "messages": [{"role": "user", "content": DESCRIBE}],
}


def _hold_of_the_long_series(world: World) -> Decimal:
    """The long series' hold for ``ASK``, as an unlimited key gets it (whose step 2 the credits
    cover: flagged ``over_hold``)."""
    _series(world)
    unlimited = world.openai_client().chat.completions.create(**ASK)  # type: ignore[call-overload]
    assert "over_hold" in world.usage_record(unlimited.id).flag_list  # the credits covered it
    return Reservation.objects.get(generation_id=unlimited.id).amount


def _refused(world: World, key: str) -> openai.APIStatusError:
    """``ASK`` sent with ``key``: its refusal, once only step 1 reached the upstream."""
    limited = openai.OpenAI(base_url=f"{world.gateway_url}/v1", api_key=key, max_retries=0)
    sent = len(world.upstream_requests("/v1/chat/completions"))
    with pytest.raises(openai.APIStatusError) as raised:
        limited.chat.completions.create(**ASK)  # type: ignore[call-overload]
    assert len(world.upstream_requests("/v1/chat/completions")) == sent + 1  # step 1 only
    return raised.value


def test_a_step_beyond_the_keys_limit_is_refused_though_the_credits_cover_it(
    world: World,
) -> None:
    """The credits beyond every hold cover step 2's larger prompt, its key's limit window does
    not: refused with the 403 a hold past the limit gets, step 2 not called and recorded (before,
    only the organization's credits were looked at: step 2 ran past the key's limit)."""
    hold = _hold_of_the_long_series(world)
    key = world.key_for(limit=money(hold + Decimal("0.00000100")), limit_reset="daily")

    refusal = _refused(world, key)

    assert refusal.status_code == 403
    assert refusal.body["type"] == "key_limit_reached"  # type: ignore[index]
    assert "step 2 (test/bytes) of pipeline/long" in refusal.message
    metadata = refusal.body["metadata"]  # type: ignore[index]
    generation_id = metadata["generation_id"]
    assert 0 < world.usage_record(generation_id).cost <= hold  # step 1, within the limit
    # What every key_limit_reached carries (README, hierarchical budget): what the key can still
    # spend and when its window ends.
    assert Decimal(metadata["remaining"]) == Decimal(metadata["available"])
    assert metadata["reset"] == "daily"
    assert datetime.fromisoformat(metadata["reset_at"]) > timezone.now()
    assert "limited_by" not in metadata  # its own window binds
    refused = UsageStep.objects.get(generation_id=generation_id, step=1)
    assert (refused.gate, refused.cost) == ("not_called", 0)


def test_a_step_beyond_an_ancestors_limit_names_the_ancestor(world: World) -> None:
    """A key whose own window could cover step 2, made by a key whose window cannot: the 403
    names that key, by prefix and name, in its message and ``metadata.limited_by``, as a hold
    refused by an ancestor's window does (before, it named no key)."""
    hold = _hold_of_the_long_series(world)
    _, parent = key_row_make(
        world.organization, KeyScope.MANAGE, name="deploy", limit=Decimal("1"), limit_reset="daily"
    )
    child, _ = child_key_make(parent, limit=Decimal("1"), limit_reset="daily")
    # A person narrows the parent's limit from the dashboard (a child keeps its own).
    tight = {"limit": money(hold + Decimal("0.00000100"))}
    key_lineage.api_key_update_bounded(acting_key_id=None, key=parent, changes=tight)

    refusal = _refused(world, child)

    assert refusal.status_code == 403
    assert refusal.body["type"] == "key_limit_reached"  # type: ignore[index]
    metadata = refusal.body["metadata"]  # type: ignore[index]
    assert metadata["limited_by"] == f"{parent.prefix}… ('deploy')"
    assert f"key {metadata['limited_by']} this key was made from" in refusal.message
    assert "step 2 (test/bytes) of pipeline/long" in refusal.message
    # What this key can still spend is the parent's window's (the child's own leaves far more);
    # the parent's limit is not given as such.
    assert Decimal(metadata["remaining"]) <= Decimal("0.00000100")
    assert "limit" not in metadata


def test_a_step_names_the_first_window_in_key_id_order_that_cannot_cover_it(world: World) -> None:
    """A key whose own window is the tightest, made by a key whose window leaves more but still
    too little for step 2: a hold checks the windows in key id order (the ancestor's first) and
    is refused by the first that cannot cover it, so the step's 403 names the ancestor, whose
    limit is the one to raise (before, it named the tightest window: "This key's credit limit",
    though raising that would not have let step 2 run)."""
    hold = _hold_of_the_long_series(world)
    parent_limit = money(hold + Decimal("0.00001"))  # far less than step 2's larger prompt needs
    _, parent = key_row_make(
        world.organization, KeyScope.MANAGE, name="deploy", limit=parent_limit, limit_reset="daily"
    )
    child, _ = child_key_make(parent, limit=money(hold + Decimal("0.000001")), limit_reset="daily")

    refusal = _refused(world, child)

    assert refusal.status_code == 403
    metadata = refusal.body["metadata"]  # type: ignore[index]
    assert metadata["limited_by"] == f"{parent.prefix}… ('deploy')"
    assert f"key {metadata['limited_by']} this key was made from" in refusal.message
    # What this key can still spend is its own window's, the tightest.
    assert Decimal(metadata["remaining"]) <= Decimal("0.000001")
    assert "limit" not in metadata
