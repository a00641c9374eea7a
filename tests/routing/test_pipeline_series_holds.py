"""A series step's hold covers the prompt it sends: the previous answer, held at 4 bytes a
token when planned, may be tokens of many more bytes (the fake's word of 150 letters is one
token), and a provider counting a token per byte (``x@tokenizer=bytes``) bills that. Served
through the ``openai`` SDK against the fake upstream."""

from __future__ import annotations

import openai
import pytest

from billing.models import Reservation, UsageStep
from tests.routing.test_pipelines import DESCRIBE
from tests.routing.world import World, base_catalog, endpoint, model

LONG_WORD = "a" * 150
LONG_PROMPT = DESCRIBE + " Please keep it short." * 100  # held at its bytes, counted ~1 in 4


def _series(world: World) -> None:
    data = base_catalog(world.fake_url)
    data["models"] += [model("test/long-tokens"), model("test/bytes")]
    data["endpoints"] += [
        endpoint("test/long-tokens", "fake-openai", f"gpt-5@reply={LONG_WORD},repeat=8", "5", "20"),
        endpoint("test/bytes", "fake-openai-b", "gpt-4o-mini@tokenizer=bytes", "1", "2"),
    ]
    world.catalog(data)
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
    data = base_catalog(world.fake_url)
    for name, upstream, input_, output in endpoints:
        data["models"].append(model(name))
        data["endpoints"].append(endpoint(name, "fake-openai", upstream, input_, output))
    world.catalog(data)
    steps = [{"model": name} for name, *_ in endpoints]
    assert world.pipeline_create("series", "series", steps).status_code == 201


def test_a_step_fed_ordinary_prose_that_hit_max_tokens_is_served(world: World) -> None:
    prose = "Green_tea_leaves_give_a_mild_taste_and_a_sweet_finish."
    _steps(
        world,
        ("test/prose", f"gpt-4o-mini@reply={prose},repeat=40", "1", "2"),
        ("test/priced", "gpt-4o-mini", "5", "10"),
    )

    completion = world.openai_client().chat.completions.create(
        model="pipeline/series", max_tokens=60, messages=[{"role": "user", "content": DESCRIBE}]
    )

    assert len(world.upstream_requests("/v1/chat/completions")) == 2
    assert world.usage_record(completion.id).cost > 0


def test_a_step_never_borrows_what_a_later_step_is_held_for(world: World) -> None:
    _steps(
        world,
        ("test/long-tokens", f"gpt-5@reply={LONG_WORD},repeat=8", "5", "20"),
        ("test/bytes", "gpt-4o-mini@tokenizer=bytes", "1", "2"),
        ("test/dear", "gpt-5", "200", "800"),  # a hold that would cover step 2 many times
    )

    completion = world.openai_client().chat.completions.create(
        model="pipeline/series", max_tokens=8, messages=[{"role": "user", "content": DESCRIBE}]
    )

    assert len(world.upstream_requests("/v1/chat/completions")) == 3
    assert "over_hold" in world.usage_record(completion.id).flag_list  # step 2, on its own share


def test_a_step_never_borrows_what_earlier_steps_spent(world: World) -> None:
    _steps(
        world,
        # a token per byte of its prompt, at a price whose hold dwarfs step 2's need: spent whole
        ("test/spent", f"gpt-5@reply={LONG_WORD},repeat=8,tokenizer=bytes", "200", "800"),
        ("test/bytes", "gpt-4o-mini@tokenizer=bytes", "50", "100"),
    )

    completion = world.openai_client().chat.completions.create(
        model="pipeline/series", max_tokens=8, messages=[{"role": "user", "content": LONG_PROMPT}]
    )

    assert len(world.upstream_requests("/v1/chat/completions")) == 2
    assert "over_hold" in world.usage_record(completion.id).flag_list


def test_a_step_the_balance_cannot_cover_is_refused_and_recorded(world: World) -> None:
    _steps(
        world,
        ("test/long-tokens", f"gpt-5@reply={LONG_WORD},repeat=8", "5", "20"),
        ("test/dearest", "gpt-4o-mini@tokenizer=bytes", "20000", "20000"),
    )

    with pytest.raises(openai.APIStatusError) as raised:
        world.openai_client().chat.completions.create(
            model="pipeline/series", max_tokens=8, messages=[{"role": "user", "content": DESCRIBE}]
        )

    assert raised.value.status_code == 402
    assert "step 2 (test/dearest) of pipeline/series" in raised.value.message
    assert len(world.upstream_requests("/v1/chat/completions")) == 1
    generation_id = raised.value.body["metadata"]["generation_id"]  # type: ignore[index]
    assert world.usage_record(generation_id).cost > 0  # step 1 is billed
    refused = UsageStep.objects.get(generation_id=generation_id, step=1)
    assert (refused.gate, refused.cost) == ("not_called", 0)
