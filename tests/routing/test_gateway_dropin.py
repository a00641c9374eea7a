"""Drop-in behaviour the official SDKs' most common code relies on: streams without an unasked
usage chunk, errors an SDK's retries can tell apart, and context windows honoured in planning."""

from __future__ import annotations

import openai
import pytest

from routing.fake_upstream.answers import answer_text
from tests.routing.world import World


def client_for(world: World, **options: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{world.gateway_url}/v1", api_key=world.key, **options)  # type: ignore[arg-type]


# --- the stream's usage chunk ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "upstream_model"),
    [("test/gpt", "gpt-4o-mini"), ("test/claude", "claude-sonnet-4-5"),
     ("test/gemini", "gemini-2.5-flash")],
)  # fmt: skip
def test_stream_without_stream_options_has_no_usage_chunk(
    world: World, model: str, upstream_model: str
) -> None:
    stream = client_for(world, max_retries=0).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Tell me about tea"}], stream=True
    )

    # The loop every tutorial copies: it indexes choices[0] of every chunk.
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)

    assert text == answer_text(upstream_model, "Tell me about tea")
    # Billing still has the provider's count: the upstream was asked for it all the same.
    if model == "test/gpt":
        sent = world.last_upstream("/v1/chat/completions")["body"]
        assert sent["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    "extra",
    [{"stream_options": {"include_usage": True}}, {"extra_body": {"usage": {"include": True}}}],
    ids=["stream_options", "openrouter_usage_include"],
)
def test_stream_sends_the_usage_chunk_when_asked(world: World, extra: dict[str, object]) -> None:
    chunks = list(
        client_for(world, max_retries=0).chat.completions.create(
            model="test/gpt",
            messages=[{"role": "user", "content": "Tell me about tea"}],
            stream=True,
            **extra,  # type: ignore[arg-type]
        )
    )

    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.model_extra["cost"] > 0
    assert all(chunk.choices for chunk in chunks[:-1])
    record = world.usage_record(chunks[0].id)
    assert record.completion_tokens == chunks[-1].usage.completion_tokens > 0


def test_stream_without_usage_chunk_is_billed_as_before(world: World) -> None:
    asked = list(
        client_for(world, max_retries=0).chat.completions.create(
            model="test/gpt", messages=[{"role": "user", "content": "Explain rain"}],
            stream=True, stream_options={"include_usage": True},
        )
    )  # fmt: skip
    unasked = list(
        client_for(world, max_retries=0).chat.completions.create(
            model="test/gpt", messages=[{"role": "user", "content": "Explain rain"}], stream=True
        )
    )

    assert unasked[-1].choices and unasked[-1].usage is None
    charged, reported = world.usage_record(unasked[0].id), asked[-1].usage
    assert reported is not None
    assert (charged.prompt_tokens, charged.completion_tokens) == (
        reported.prompt_tokens,
        reported.completion_tokens,
    )
    assert charged.cost == world.usage_record(asked[0].id).cost > 0
    assert not charged.flags
