"""A stream cut while its model reasons is billed the reasoning the provider generated, in every
shape a provider streams it: DeepSeek's ``reasoning_content`` (relayed to the client as it came)
and Anthropic's thinking the request excluded (``reasoning.exclude``: read, never relayed).
Before, neither counted: a client that read DeepSeek's reasoning and left before the usage chunk
got it free, and excluded thinking cut short billed one output token."""

from __future__ import annotations

import base64

import pytest

from billing.models import Reservation, UsageFlag, UsageRecord
from routing.fake_upstream.answers import split_tokens
from routing.gateway.usage_estimate import choices_chars
from routing.providers.answer_checks import generated_chars as delta_chars
from tests.routing.servers import poll
from tests.routing.world import World, endpoint, model
from training.tokens import tokens_from_chars


def _record(world: World, model_id: str) -> UsageRecord:
    return poll(
        lambda: UsageRecord.objects.filter(organization=world.organization, model=model_id).first()
    )


def test_deepseek_reasoning_read_before_the_client_leaves_is_billed(world: World) -> None:
    """The fake's reasoner streams 20 sentences of ``reasoning_content`` (140 pieces), then
    stalls after 81 events: the client reads the role chunk and 80 pieces of reasoning, then
    leaves. Billed exactly those 80 pieces: more would be reasoning counted twice."""
    world.catalog({
        "models": [model("test/reasoner")],
        "endpoints": [endpoint("test/reasoner", "fake-openai", "deepseek-reasoner@hang_after=81")],
    })  # fmt: skip
    body = {"model": "test/reasoner", "stream": True, "max_tokens": 2000,
            "messages": [{"role": "user", "content": "Why is the sky blue?"}]}  # fmt: skip

    world.client_reads_then_leaves("/v1/chat/completions", body, events=81)

    record = _record(world, "test/reasoner")
    thought = " ".join(["Step: weigh the question once more."] * 20)
    relayed = "".join(split_tokens(thought)[:80])
    assert (record.status, record.error_type) == ("aborted", "client_disconnected")
    assert record.completion_tokens == tokens_from_chars(len(relayed))  # old code: 0
    assert UsageFlag.USAGE_ESTIMATED in record.flag_list
    assert record.cost <= Reservation.objects.get(generation_id=record.generation_id).amount


def test_excluded_anthropic_thinking_cut_short_is_billed(world: World) -> None:
    """Anthropic streams the thinking whatever ``exclude`` says (the gateway drops it); the fake
    stalls after message_start, ping, the block's start and 20 thinking deltas. Nothing of them
    reaches the client, so it leaves once the stream has stalled for 0.5 s (no event to wait
    on). Billed exactly those 20 deltas: more would be thinking counted twice."""
    world.catalog({
        "models": [model("test/claude-think")],
        "endpoints": [endpoint("test/claude-think", "fake-anthropic",
                               "claude-sonnet-4-5@hang_after=23", "3", "15")],
    })  # fmt: skip
    prompt = "Explain, with care and at length, why the sky is blue in the daytime and red at dusk."
    body = {"model": "test/claude-think", "stream": True, "max_tokens": 4000,
            "reasoning": {"max_tokens": 2000, "exclude": True},
            "messages": [{"role": "user", "content": prompt}]}  # fmt: skip

    world.client_leaves("/v1/chat/completions", body, after=0.5)

    record = _record(world, "test/claude-think")
    thought = f"The user asks: {prompt[:80]}. I will answer plainly."
    streamed = "".join(split_tokens(thought)[:20])
    assert (record.status, record.error_type) == ("aborted", "client_disconnected")
    assert record.completion_tokens == tokens_from_chars(len(streamed))  # old code: 1
    assert record.cost <= Reservation.objects.get(generation_id=record.generation_id).amount


def test_redacted_thinking_cut_short_is_billed_at_least_its_length(world: World) -> None:
    """Anthropic bills redacted thinking in full, and sends it encrypted (``data``): no relayed
    text counts it. The fake stalls after message_start, ping and the redacted block's start."""
    world.catalog({
        "models": [model("test/claude-redacted")],
        "endpoints": [endpoint("test/claude-redacted", "fake-anthropic",
                               "claude-sonnet-4-5-redacted@hang_after=3", "3", "15")],
    })  # fmt: skip
    prompt = "Why is the sky blue?"
    body = {"model": "test/claude-redacted", "stream": True, "max_tokens": 4000,
            "reasoning": {"max_tokens": 2000}, "messages": [{"role": "user", "content": prompt}]}  # fmt: skip

    world.client_leaves("/v1/chat/completions", body, after=0.5)

    record = _record(world, "test/claude-redacted")
    thought = f"The user asks: {prompt}. I will answer plainly."
    data = base64.b64encode(thought.encode() * 40).decode()
    assert (record.status, record.error_type) == ("aborted", "client_disconnected")
    # Its ciphertext's bytes (base64's ¾) ÷ 4: the branch's first fix counted base64's length.
    ciphertext = len(data) * 3 // 4
    assert tokens_from_chars(ciphertext) <= record.completion_tokens < tokens_from_chars(len(data))
    assert record.completion_tokens > 500  # old code: 1
    assert record.cost <= Reservation.objects.get(generation_id=record.generation_id).amount


def test_reasoning_sent_under_both_names_is_counted_once() -> None:
    """vLLM (between two releases) sends the same reasoning as ``reasoning`` and as
    ``reasoning_content``: an estimate counts it once, in a stream delta and in a whole answer
    (both were added before: twice the reasoning billed)."""
    thought = "x" * 100
    both = {"reasoning": thought, "reasoning_content": thought}

    assert delta_chars(both) == 100
    assert delta_chars(both | {"content": "abc"}) == 103
    assert choices_chars([{"message": both | {"content": "abc"}}]) == 103
    assert delta_chars({"reasoning_content": thought}) == 100  # either name alone still counts


@pytest.mark.parametrize("upstream", ["claude-sonnet-4-5-redacted", "claude-sonnet-4-5"])
def test_a_whole_and_a_streamed_answer_count_unrelayed_thinking_alike(
    world: World, upstream: str
) -> None:
    """An answer whose count is impossible (so billed on characters ÷ 4): its redacted thinking
    (¾ of the data's length) and its excluded thinking count whole as streamed. Before, a whole
    answer counted neither (redacted: 120 output tokens billed whole, 710 streamed; excluded: 120
    and 134)."""
    world.catalog({
        "models": [model("test/claude-estimated")],
        "endpoints": [endpoint("test/claude-estimated", "fake-anthropic",
                               f"{upstream}@report_completion=-3", "3", "15")],
    })  # fmt: skip
    reasoning = {"max_tokens": 2000, "exclude": upstream == "claude-sonnet-4-5"}
    body = {"model": "test/claude-estimated", "max_tokens": 4000, "extra_body": {"reasoning": reasoning},
            "messages": [{"role": "user", "content": "Why is the sky blue?"}]}  # fmt: skip
    client = world.openai_client()

    whole = client.chat.completions.create(**body)
    with client.chat.completions.create(**body, stream=True) as stream:
        streamed = [chunk.id for chunk in stream][-1]

    billed = [world.usage_record(answer).completion_tokens for answer in (whole.id, streamed)]
    answer = tokens_from_chars(len(whole.choices[0].message.content or ""))
    assert billed[0] == billed[1] > answer + (500 if "redacted" in upstream else 5)
