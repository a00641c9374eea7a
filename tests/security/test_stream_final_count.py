"""A stream is billed the provider's count as reported only when it is the final one: a stream
that ended without it, or was cut short, carries at most an early count (Anthropic's
message_start says 1 output token) and is billed the larger of it and an estimate of the text it
generated. Before, a stream that ended with message_stop was billed its early count though its
message_delta carried none."""

from __future__ import annotations

from tests.routing.world import World
from tests.security.test_impossible_usage import MAX_TOKENS, answer_text, ask, platform_model
from training.tokens import tokens_from_chars


def test_an_anthropic_stream_ended_without_its_final_count_is_billed_its_text(
    world: World,
) -> None:
    model_id = platform_model(world, "anthropic", "delta_usage=none")

    status, generation_id, events = ask(world, model_id, stream=True)

    assert status == 200, events
    text = answer_text(events, stream=True)
    record = world.usage_record(generation_id)
    assert record.status == "succeeded"
    assert (
        record.completion_tokens == min(tokens_from_chars(len(text)), MAX_TOKENS) > 1
    )  # old code: 1


def test_an_anthropic_stream_cut_after_some_text_is_billed_that_text(world: World) -> None:
    """message_start, ping, the block's start, then 9 text deltas, then the connection drops."""
    model_id = platform_model(world, "anthropic", "disconnect_after=12")

    status, generation_id, events = ask(world, model_id, stream=True)

    assert status == 200 and "error" in events[-1], events
    text = answer_text(events, stream=True)
    record = world.usage_record(generation_id)
    assert (record.status, record.error_type) == ("failed", "upstream_error_mid_stream")
    assert (
        record.completion_tokens == min(tokens_from_chars(len(text)), MAX_TOKENS) > 1
    )  # the early count: 1
