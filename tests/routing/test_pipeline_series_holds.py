"""A series step's hold covers the prompt it sends: the previous answer, held at 4 bytes a
token when planned, may be tokens of many more bytes (the fake's word of 150 letters is one
token), and a provider counting a token per byte (``x@tokenizer=bytes``) bills that. Served
through the ``openai`` SDK against the fake upstream."""

from __future__ import annotations

import openai
import pytest

from billing.models import Reservation, UsageStep
from tests.routing.test_pipelines import DESCRIBE, client_for, create
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
    assert create(world, "long", "series", steps).status_code == 201


def test_a_step_fed_an_answer_of_long_tokens_is_charged_within_its_hold(world: World) -> None:
    _series(world)

    completion = client_for(world).chat.completions.create(
        model="pipeline/long", max_tokens=8, messages=[{"role": "user", "content": LONG_PROMPT}]
    )

    record = world.usage_record(completion.id)
    second = UsageStep.objects.get(generation_id=completion.id, step=1)
    assert second.prompt_tokens > len(LONG_WORD) * 8  # a token per byte of the previous answer
    assert "over_hold" not in record.flag_list
    assert Reservation.objects.get(generation_id=completion.id).amount >= record.cost


def test_a_step_the_requests_hold_cannot_cover_is_not_called(world: World) -> None:
    _series(world)

    with pytest.raises(openai.APIStatusError) as raised:
        client_for(world).chat.completions.create(
            model="pipeline/long", max_tokens=8, messages=[{"role": "user", "content": DESCRIBE}]
        )

    assert raised.value.status_code == 502
    assert "Step 2 (test/bytes) of pipeline/long was not called" in raised.value.message
    assert len(world.upstream_requests("/v1/chat/completions")) == 1
    generation_id = raised.value.body["metadata"]["generation_id"]  # type: ignore[index]
    record = world.usage_record(generation_id)
    assert record.cost > 0 and "over_hold" not in record.flag_list
