"""The demo upstream honours ``n``, ``logprobs``/``top_logprobs`` and ``reasoning_effort``, and the
gateway relays them (whole and streamed) and bills what they cost, all offline (openai SDK)."""

from __future__ import annotations

from decimal import Decimal

from routing.fake_upstream.answers import answer_text, split_tokens
from routing.fake_upstream.openai_extras import REASONING_TOKENS
from tests.routing.world import World


def test_n_choices_are_answered_and_billed(world: World) -> None:
    client = world.openai_client()
    one = client.chat.completions.create(
        model="test/gpt", messages=[{"role": "user", "content": "Hi"}]
    )
    three = client.chat.completions.create(
        model="test/gpt", messages=[{"role": "user", "content": "Hi"}], n=3
    )

    assert [c.index for c in three.choices] == [0, 1, 2]
    assert {c.message.content for c in three.choices} == {answer_text("gpt-4o-mini", "Hi")}
    assert three.usage.completion_tokens == 3 * one.usage.completion_tokens
    record = world.usage_record(three.id)
    assert record.completion_tokens == three.usage.completion_tokens
    assert (
        record.cost
        == Decimal(three.usage.prompt_tokens + 2 * three.usage.completion_tokens) / 1_000_000
    )


def test_n_choices_stream_interleaved(world: World) -> None:
    stream = world.openai_client().chat.completions.create(
        model="test/gpt", messages=[{"role": "user", "content": "Hi"}], n=2, stream=True
    )
    texts = ["", ""]
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""

    assert texts == [answer_text("gpt-4o-mini", "Hi")] * 2


def test_logprobs_with_top_logprobs_whole_and_streamed(world: World) -> None:
    client = world.openai_client()
    answer = client.chat.completions.create(model="test/gpt", logprobs=True, top_logprobs=2,
                                            messages=[{"role": "user", "content": "Hi"}])  # fmt: skip
    stream = client.chat.completions.create(model="test/gpt", logprobs=True, top_logprobs=2, stream=True,
                                            messages=[{"role": "user", "content": "Hi"}])  # fmt: skip
    streamed = [t for c in stream if c.choices and c.choices[0].logprobs
                for t in c.choices[0].logprobs.content or []]  # fmt: skip

    content = answer.choices[0].logprobs.content
    text = answer_text("gpt-4o-mini", "Hi")
    assert [t.token for t in content] == split_tokens(text)
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)
    assert [t.token for t in streamed] == [t.token for t in content]


def test_reasoning_effort_is_counted_as_reasoning_tokens(world: World) -> None:
    answer = world.openai_client().chat.completions.create(
        model="test/gpt", reasoning_effort="high", messages=[{"role": "user", "content": "Hi"}]
    )

    assert answer.usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS["high"]
    assert world.usage_record(answer.id).reasoning_tokens == REASONING_TOKENS["high"]
