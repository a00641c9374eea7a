"""Legacy ``POST /v1/completions`` with the official openai SDK: a chat request underneath."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from billing.models import LedgerEntry, Reservation, UsageRecord
from routing.fake_upstream.answers import answer_text
from tests.routing.world import World, endpoint, model


def test_sdk_completion_is_a_text_completion_billed_as_chat(world: World) -> None:
    completion = world.openai_client().completions.create(
        model="test/gpt", prompt="What is 6*7?", max_tokens=50, temperature=0.1
    )

    assert completion.object == "text_completion" and completion.id.startswith("gen-")
    assert completion.model == "test/gpt"
    assert completion.choices[0].text == answer_text("gpt-4o-mini", "What is 6*7?")
    assert completion.choices[0].finish_reason == "stop"
    sent = world.last_upstream("/v1/chat/completions")["body"]
    assert sent == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is 6*7?"}],
                    "max_tokens": 50, "temperature": 0.1}  # fmt: skip
    usage = completion.usage
    assert usage is not None
    record = world.usage_record(completion.id)
    assert (record.status, record.prompt_tokens, record.completion_tokens) == (
        "succeeded", usage.prompt_tokens, usage.completion_tokens,
    )  # fmt: skip
    assert record.cost == Decimal(usage.prompt_tokens * 1 + usage.completion_tokens * 2) / 1_000_000
    assert LedgerEntry.objects.get(idempotency_key=f"usage:{completion.id}").amount == -record.cost


def test_a_prompt_list_of_one_works_through_the_gemini_format(world: World) -> None:
    completion = world.openai_client().completions.create(
        model="test/gemini", prompt=["Hello there"]
    )

    assert completion.choices[0].text == answer_text("gemini-2.5-flash", "Hello there")
    assert completion.model_extra["provider"] == "fake-gemini"


def test_streamed_completion_yields_text_chunks_and_a_usage_chunk(world: World) -> None:
    chunks = list(
        world.openai_client().completions.create(
            model="test/gpt", prompt="Tell me about tea", stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip

    assert all(c.object == "text_completion" for c in chunks)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == answer_text("gpt-4o-mini", "Tell me about tea")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    record = world.usage_record(chunks[0].id)
    assert record.streamed and record.status == "succeeded"
    assert record.cost == Decimal(str(usage.model_extra["cost"]))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "test/gpt"}, "prompt"),
        ({"model": "test/gpt", "prompt": [1, 2, 3]}, "prompt"),
        ({"model": "test/gpt", "prompt": [[1, 2], [3]]}, "prompt"),
        ({"model": "test/gpt", "prompt": ["one", 2]}, "prompt"),
        ({"model": "test/gpt", "prompt": []}, "prompt"),
        ({"model": "test/gpt", "prompt": ["p"] * 17}, "prompt"),
        ({"model": "test/gpt", "prompt": ["one", "two"], "stream": True}, "stream"),
        ({"model": "test/gpt", "prompt": "x", "echo": True}, "echo"),
        ({"model": "test/gpt", "prompt": "x", "suffix": "end"}, "suffix"),
        ({"model": "test/gpt", "prompt": "x", "logprobs": 2}, "logprobs"),
        ({"model": "test/gpt", "prompt": "x", "best_of": 3}, "best_of"),
        ({"model": "test/gpt", "prompt": "x", "max_tokens": 0}, "max_tokens"),
        # Found by the fuzz test: tools reached the provider and came back as a 502.
        ({"model": "test/gpt", "prompt": "x", "tools": [{"type": "x"}]}, "tools"),
        ({"model": "test/gpt", "prompt": "x", "tool_choice": "auto"}, "tool_choice"),
    ],
)
def test_bad_completion_requests_get_a_400_naming_the_field(
    world: World, body: dict[str, Any], param: str
) -> None:
    response = httpx.post(f"{world.gateway_url}/v1/completions", json=body, timeout=10,
                          headers={"authorization": f"Bearer {world.key}"})  # fmt: skip

    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert not world.upstream_requests()
    assert not UsageRecord.objects.exists() and not Reservation.objects.exists()


def test_an_unknown_model_is_a_404_in_the_api_error_format(world: World) -> None:
    world.catalog({"models": [], "endpoints": [], "providers": []})
    with pytest.raises(openai.NotFoundError) as raised:
        world.openai_client().completions.create(model="test/nothing", prompt="hi")

    assert "Unknown model 'test/nothing'" in raised.value.message


PROMPTS = ["What is 6*7?", "Hello there", "Tell me about tea"]


def test_a_prompt_list_is_one_generation_with_a_choice_per_prompt_and_n(world: World) -> None:
    completion = world.openai_client().completions.create(model="test/gpt", prompt=PROMPTS, n=2,
                                                      max_tokens=40)  # fmt: skip

    assert completion.object == "text_completion" and completion.id.startswith("gen-")
    assert [c.index for c in completion.choices] == list(range(6))
    expected = [answer_text("gpt-4o-mini", prompt) for prompt in PROMPTS for _ in range(2)]
    assert [c.text for c in completion.choices] == expected
    sent = [r["body"]["messages"] for r in world.upstream_requests("/v1/chat/completions")]
    assert sorted(m[0]["content"] for m in sent) == sorted(PROMPTS)
    usage = completion.usage
    assert usage is not None
    record = world.usage_record(completion.id)
    assert UsageRecord.objects.count() == 1 and record.status == "succeeded"
    assert (record.prompt_tokens, record.completion_tokens) == (
        usage.prompt_tokens, usage.completion_tokens,
    )  # fmt: skip
    assert LedgerEntry.objects.get(idempotency_key=f"usage:{completion.id}").amount == -record.cost
    (hold,) = Reservation.objects.all()  # one hold for every prompt, released on settlement
    assert hold.generation_id == completion.id and hold.state != "held"
    assert hold.amount >= record.cost


def test_a_prompt_list_costs_the_sum_of_its_prompts_asked_one_by_one(world: World) -> None:
    client = world.openai_client()
    together = client.completions.create(model="test/gemini", prompt=PROMPTS, max_tokens=40)
    alone = [
        client.completions.create(model="test/gemini", prompt=p, max_tokens=40) for p in PROMPTS
    ]

    assert [c.text for c in together.choices] == [c.choices[0].text for c in alone]
    assert together.usage is not None
    for name in ("prompt_tokens", "completion_tokens"):
        assert getattr(together.usage, name) == sum(getattr(c.usage, name) for c in alone)
    charged = world.usage_record(together.id).cost
    assert charged > 0
    assert charged == sum(world.usage_record(c.id).cost for c in alone)
    assert Decimal(str(together.usage.model_extra["cost"])) == charged


def test_a_prompt_list_falls_back_as_a_whole_to_the_next_endpoint(world: World) -> None:
    world.catalog({"models": [model("test/multi")], "endpoints": [
        endpoint("test/multi", "fake-openai", "gpt-4o-mini@status=503", "0.5", "0.5"),
        endpoint("test/multi", "fake-openai-b", "gpt-4o-mini")]})  # fmt: skip

    completion = world.openai_client().completions.create(model="test/multi", prompt=PROMPTS[:2])

    assert completion.model_extra["provider"] == "fake-openai-b"
    assert [c.text for c in completion.choices] == [
        answer_text("gpt-4o-mini", p) for p in PROMPTS[:2]
    ]
    failed = completion.model_extra["fallbacks"]
    assert [a["provider"] for a in failed] == ["fake-openai", "fake-openai"]
    record = world.usage_record(completion.id)
    assert (record.provider, record.status) == ("fake-openai-b", "succeeded")


def test_the_prompt_limit_is_a_setting(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    settings.COMPLETIONS_MAX_PROMPTS = 2
    with pytest.raises(openai.BadRequestError) as raised:
        world.openai_client().completions.create(model="test/gpt", prompt=PROMPTS)

    assert "at most 2 per request" in raised.value.message
    assert (
        len(world.openai_client().completions.create(model="test/gpt", prompt=PROMPTS[:2]).choices)
        == 2
    )


def _one_prompt_fails(world: World, *, fallback: bool) -> None:
    """``test/multi``: an endpoint that answers every prompt but one saying BOOM (a 500), then,
    with ``fallback``, one that answers every prompt at another price."""
    endpoints = [
        endpoint("test/multi", "fake-openai", "gpt-4o-mini@status=500,when=BOOM", "1", "2")
    ]
    if fallback:
        endpoints.append(endpoint("test/multi", "fake-openai-b", "gpt-4o-mini", "3", "5"))
    world.catalog({"models": [model("test/multi")], "endpoints": endpoints})


def test_prompts_answered_before_one_failed_are_billed_and_the_error_says_so(
    world: World,
) -> None:
    _one_prompt_fails(world, fallback=False)
    client = world.openai_client()
    with pytest.raises(openai.InternalServerError) as raised:
        client.completions.create(model="test/multi", prompt=["Say hi", "BOOM now", "Say bye"])

    error = raised.value.body
    assert isinstance(error, dict)
    assert "2 of 3 prompts were answered" in error["message"]
    generation_id = error["metadata"]["generation_id"]
    record = world.usage_record(generation_id)
    # What the provider answered (and bills us) is billed once: each answered prompt at its
    # price, as the same prompt asked alone costs.
    alone = [client.completions.create(model="test/multi", prompt=p) for p in ("Say hi", "Say bye")]
    assert (record.status, record.provider) == ("failed", "fake-openai")
    assert record.cost == sum(world.usage_record(c.id).cost for c in alone) > 0
    assert record.completion_tokens == sum(c.usage.completion_tokens for c in alone if c.usage)
    (entry,) = LedgerEntry.objects.filter(idempotency_key=f"usage:{generation_id}")
    assert entry.amount == -record.cost
    assert Reservation.objects.get(generation_id=generation_id).state == "settled"
    billed = [a.get("billed") for a in record.trace_data["fallbacks"]]
    assert [b["cost"] for b in billed if b] and sum(
        Decimal(b["cost"]) for b in billed if b
    ) == record.cost


def test_a_fallback_after_one_prompt_failed_bills_the_answers_it_replaced_once(
    world: World,
) -> None:
    _one_prompt_fails(world, fallback=True)
    client = world.openai_client()
    completion = client.completions.create(model="test/multi", prompt=["Say hi", "BOOM now"])

    assert completion.model_extra["provider"] == "fake-openai-b"
    assert [c.text for c in completion.choices] == [
        answer_text("gpt-4o-mini", p) for p in ("Say hi", "BOOM now")
    ]
    record = world.usage_record(completion.id)
    # The first endpoint's answer to "Say hi" (discarded: one endpoint serves the request) is
    # billed at its price on top of the served answers, and shown in its trace entry.
    first = client.completions.create(model="test/multi", prompt="Say hi")
    assert first.model_extra["provider"] == "fake-openai"
    served = Decimal(str(completion.usage.model_extra["cost"])) if completion.usage else None
    discarded = world.usage_record(first.id).cost
    assert served is not None and record.cost == served == discarded + (
        Decimal(completion.usage.prompt_tokens * 3 + completion.usage.completion_tokens * 5)
        / 1_000_000
    )
    assert LedgerEntry.objects.get(idempotency_key=f"usage:{completion.id}").amount == -record.cost
    assert UsageRecord.objects.filter(generation_id=completion.id).count() == 1
