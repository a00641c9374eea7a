"""Drop-in behaviour the official SDKs' most common code relies on: streams without an unasked
usage chunk, errors an SDK's retries can tell apart, and context windows honoured in planning."""

from __future__ import annotations

import httpx
import openai
import pytest

from routing.fake_upstream.answers import answer_text
from tests.routing.world import World, base_catalog, endpoint, model, provider

HELLO = [{"role": "user", "content": "hello"}]


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


# --- permanent and transient errors ------------------------------------------------------------------


def counting_client(world: World) -> tuple[openai.OpenAI, list[str]]:
    """The SDK with its default retries (2), and the list of HTTP requests it sent."""
    sent: list[str] = []
    http = httpx.Client(event_hooks={"request": [lambda request: sent.append(str(request.url))]})
    return openai.OpenAI(
        base_url=f"{world.gateway_url}/v1", api_key=world.key, http_client=http
    ), sent


def test_no_credentials_is_permanent_the_sdk_does_not_retry(world: World) -> None:
    data = base_catalog(world.fake_url)
    data["providers"].append(provider("keyless", "openai", world.fake_url, "KEYLESS_API_KEY"))
    data["models"].append(model("test/keyless"))
    data["endpoints"].append(endpoint("test/keyless", "keyless", "gpt-4o-mini"))
    world.catalog(data)
    client, sent = counting_client(world)

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="test/keyless", messages=HELLO)

    assert len(sent) == 1
    assert caught.value.status_code == 503
    assert "no credentials for provider 'keyless'" in caught.value.message
    assert "retry-after" not in caught.value.response.headers
    assert caught.value.response.headers["x-should-retry"] == "false"


def test_preferences_that_exclude_every_endpoint_are_a_400_sent_once(world: World) -> None:
    client, sent = counting_client(world)

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="test/gpt", messages=HELLO, extra_body={"provider": {"max_price": {"prompt": 0}}}
        )

    assert len(sent) == 1
    assert caught.value.body["param"] == "provider"  # type: ignore[index]
    assert "provider.max_price" in caught.value.message
    assert "retry-after" not in caught.value.response.headers


def test_transient_503_keeps_retry_after(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_BREAKER_FAILURES = 1
    world.catalog({"models": [model("test/down")],
                   "endpoints": [endpoint("test/down", "fake-openai", "gpt@status=500")]})  # fmt: skip
    client = client_for(world, max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="test/down", messages=HELLO)  # opens the breaker

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="test/down", messages=HELLO)

    assert caught.value.status_code == 503
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert "x-should-retry" not in caught.value.response.headers


# --- context windows ---------------------------------------------------------------------------------


def small_and_large(world: World) -> None:
    """``test/small`` (4,000-token window, cheap) and ``test/large`` (128k, dearer)."""
    data = base_catalog(world.fake_url)
    data["models"] += [model("test/small") | {"context_length": 4000}, model("test/large")]
    data["endpoints"] += [endpoint("test/small", "fake-openai", "gpt-4o-mini", "0.1", "0.1"),
                          endpoint("test/large", "fake-openai-b", "gpt-4o-mini", "5", "5")]  # fmt: skip
    world.catalog(data)


LONG = [{"role": "user", "content": "word " * 6000}]  # at least 6,000 tokens in any tokenizer


def test_prompt_longer_than_the_context_is_a_400_naming_the_limit(world: World) -> None:
    small_and_large(world)
    client, sent = counting_client(world)

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="test/small", messages=LONG, max_tokens=100)

    assert len(sent) == 1 and world.upstream_requests() == []
    error = caught.value.body
    assert isinstance(error, dict) and error["type"] == "context_length_exceeded"
    assert error["metadata"]["context_length"] == 4000 and "4000" in error["message"]
    assert error["metadata"]["prompt_tokens_estimate"] >= 6000 and "6000" in error["message"]


def test_max_tokens_counts_against_the_context(world: World) -> None:
    small_and_large(world)
    prompt = [{"role": "user", "content": "word " * 3000}]
    client = client_for(world, max_retries=0)

    fits = client.chat.completions.create(model="test/small", messages=prompt, max_tokens=500)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="test/small", messages=prompt, max_tokens=1500)

    assert fits.model == "test/small"
    assert caught.value.body["metadata"]["max_tokens"] == 1500  # type: ignore[index]


def test_prompt_that_may_fit_is_never_refused(world: World) -> None:
    small_and_large(world)
    # 16,000 characters, above the 4,000-token window by any count per character, yet 8 words:
    # a tokenizer may make it few tokens, so the provider decides, not the estimate.
    prompt = [{"role": "user", "content": " ".join(["=" * 2000] * 8)}]

    reply = client_for(world, max_retries=0).chat.completions.create(
        model="test/small", messages=prompt
    )

    assert reply.model == "test/small"


def test_fallback_list_skips_models_whose_context_cannot_hold_the_prompt(world: World) -> None:
    small_and_large(world)

    reply = client_for(world, max_retries=0).chat.completions.create(
        model="test/small", messages=LONG, extra_body={"models": ["test/large"]}
    )

    assert reply.model == "test/large"
    assert [r["body"]["model"] for r in world.upstream_requests()] == ["gpt-4o-mini"]
    assert "fallbacks" not in reply.model_extra  # skipped in planning, not tried and failed


def test_router_excludes_candidates_whose_context_cannot_hold_the_prompt(world: World) -> None:
    small_and_large(world)
    client = client_for(world, max_retries=0)
    router = {"router": {"tradeoff": 1, "candidates": ["test/small", "test/large"]}}

    short = client.chat.completions.create(model="router/auto", messages=HELLO, extra_body=router)
    long = client.chat.completions.create(model="router/auto", messages=LONG, extra_body=router)

    assert short.model == "test/small"  # the cheap one, when it can hold the prompt
    assert long.model == "test/large"
    ranked = [r["model"] for r in long.model_extra["routing"]["ranked"]]
    assert "test/small" not in ranked and long.model_extra["routing"]["chosen"] == "test/large"
