"""Fallbacks, circuit breaking and failures: before the first byte we fall back, after it we report."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from billing.models import LedgerEntry, Reservation
from tests.routing.servers import closed_port_url, poll
from tests.routing.world import World, endpoint, model, provider


def flaky_catalog(world: World, failing_upstream: str, *, base_url: str | None = None) -> None:
    """``test/flaky``: a cheap failing OpenAI-style endpoint first, a dearer healthy Anthropic one after."""
    failing = provider("failing", "openai", world.fake_url)
    if base_url is not None:
        failing["base_url"] = base_url
    world.catalog({
        "providers": [failing],
        "models": [model("test/flaky")],
        "endpoints": [endpoint("test/flaky", "failing", failing_upstream, "0.1", "0.2"),
                      endpoint("test/flaky", "fake-anthropic", "claude-sonnet-4-5", "3", "15")],
    })  # fmt: skip


def sse_lines(response: httpx.Response) -> list[str]:
    return [line for line in response.iter_lines() if line.startswith("data: ")]


@pytest.mark.parametrize(
    "fault", ["status=500", "status=503", "status=429", "timeout", "malformed"]
)
def test_request_falls_back_when_the_first_endpoint_fails(
    world: World, settings, fault: str
) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.5
    flaky_catalog(world, f"gpt@{fault}")

    completion = world.openai_client().chat.completions.create(
        model="test/flaky", messages=[{"role": "user", "content": "hi"}]
    )

    assert completion.model_extra["provider"] == "fake-anthropic"
    failed = completion.model_extra["fallbacks"]
    assert [(f["provider"], f["model"]) for f in failed] == [("failing", "test/flaky")]
    assert world.upstream_requests("/v1/chat/completions")[-1]["model"] == "gpt"
    assert world.last_upstream("/v1/messages")["body"]["model"] == "claude-sonnet-4-5"
    record = world.usage_record(completion.id)
    assert (record.status, record.provider) == ("succeeded", "fake-anthropic")


def test_request_falls_back_when_the_first_endpoint_refuses_connections(world: World) -> None:
    flaky_catalog(world, "gpt", base_url=f"{closed_port_url()}/v1")

    completion = world.openai_client().chat.completions.create(
        model="test/flaky", messages=[{"role": "user", "content": "hi"}]
    )

    assert completion.model_extra["provider"] == "fake-anthropic"
    assert completion.model_extra["fallbacks"][0]["error"] == "connection_error"


def test_stream_falls_back_before_the_first_byte(world: World) -> None:
    flaky_catalog(world, "gpt@status=502")

    chunks = list(
        world.openai_client().chat.completions.create(
            model="test/flaky",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert {c.model_extra["provider"] for c in chunks} == {"fake-anthropic"}
    assert chunks[-1].usage is not None and chunks[-1].usage.model_extra["cost"] > 0


def test_models_list_falls_back_to_the_next_model(world: World) -> None:
    world.catalog(
        {
            "models": [model("test/broken")],
            "endpoints": [endpoint("test/broken", "fake-openai", "gpt@status=500")],
        }
    )

    completion = world.openai_client().chat.completions.create(
        model="test/broken",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"models": ["test/gemini"]},
    )

    assert completion.model == "test/gemini"
    assert completion.model_extra["fallbacks"][0]["model"] == "test/broken"


def test_all_endpoints_failing_is_a_502_in_the_error_format(world: World) -> None:
    world.catalog({"models": [model("test/down")], "endpoints": [
        endpoint("test/down", "fake-openai", "gpt@status=500"), endpoint("test/down", "fake-gemini", "gem@status=503", "5", "5")]})  # fmt: skip

    with pytest.raises(openai.APIStatusError) as caught:
        world.openai_client().chat.completions.create(
            model="test/down", messages=[{"role": "user", "content": "hi"}]
        )

    assert caught.value.status_code == 502
    error = caught.value.response.json()["error"]
    assert error["code"] == 502 and error["type"] == "upstream_error"
    assert [a["provider"] for a in error["metadata"]["attempts"]] == ["fake-openai", "fake-gemini"]
    record = world.usage_record(error["metadata"]["generation_id"])
    assert (record.status, record.cost, record.error_type) == ("failed", 0, "upstream_error")


def test_all_endpoints_timing_out_is_a_408(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.3
    world.catalog(
        {
            "models": [model("test/slow")],
            "endpoints": [endpoint("test/slow", "fake-openai", "gpt@timeout")],
        }
    )

    response = httpx.post(f"{world.gateway_url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.key}"},
                          json={"model": "test/slow", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip

    assert response.status_code == 408
    assert response.json()["error"]["type"] == "upstream_timeout"


def test_client_errors_from_upstream_are_not_retried(world: World) -> None:
    flaky_catalog(world, "gpt@status=400")

    with pytest.raises(openai.BadRequestError) as caught:
        world.openai_client().chat.completions.create(
            model="test/flaky", messages=[{"role": "user", "content": "hi"}]
        )

    assert caught.value.response.json()["error"]["metadata"]["upstream_status"] == 400
    assert world.upstream_requests("/v1/messages") == []


def test_circuit_breaker_skips_an_endpoint_that_keeps_failing(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_BREAKER_FAILURES = 2
    flaky_catalog(world, "gpt@status=500")
    client = world.openai_client()

    for _ in range(3):
        client.chat.completions.create(
            model="test/flaky", messages=[{"role": "user", "content": "hi"}]
        )

    assert len(world.upstream_requests("/v1/chat/completions")) == 2
    assert len(world.upstream_requests("/v1/messages")) == 3


def test_open_breakers_on_every_endpoint_answer_503_with_retry_after(
    world: World, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_BREAKER_FAILURES = 1
    world.catalog(
        {
            "models": [model("test/down")],
            "endpoints": [endpoint("test/down", "fake-openai", "gpt@status=500")],
        }
    )
    body = {"model": "test/down", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {world.key}"}

    first = httpx.post(f"{world.gateway_url}/v1/chat/completions", headers=headers, json=body)
    second = httpx.post(f"{world.gateway_url}/v1/chat/completions", headers=headers, json=body)

    assert first.status_code == 502
    assert second.status_code == 503 and int(second.headers["retry-after"]) >= 1
    assert second.json()["error"]["type"] == "no_provider_available"


@pytest.mark.parametrize("fault", ["disconnect_after=4", "end_after=4", "malformed"])
def test_mid_stream_failure_ends_with_an_sse_error_then_done(world: World, fault: str) -> None:
    world.catalog({"models": [model("test/cut")], "endpoints": [
        endpoint("test/cut", "fake-openai", f"gpt-4o@{fault}"), endpoint("test/cut", "fake-gemini", "gemini-2.5-flash", "5", "5")]})  # fmt: skip

    with httpx.stream("POST", f"{world.gateway_url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.key}"},
                      json={"model": "test/cut", "stream": True, "messages": [{"role": "user", "content": "Tell a long story"}]}) as response:  # fmt: skip
        lines = sse_lines(response)

    assert response.status_code == 200
    assert lines[-1] == "data: [DONE]"
    error = orjson.loads(lines[-2].removeprefix("data: "))["error"]
    assert error["type"] == "upstream_error" and error["code"] == 502
    first = orjson.loads(lines[0].removeprefix("data: "))
    assert first["provider"] == "fake-openai"  # no fallback once bytes reached the client
    assert world.upstream_requests(":streamGenerateContent") == []
    record = world.usage_record(first["id"])
    assert record.status == "failed" and record.completion_tokens > 0 and record.cost > 0


@pytest.mark.parametrize(
    ("provider_slug", "upstream"),
    [
        ("fake-openai", "gpt-4o"),
        ("fake-anthropic", "claude-sonnet-4-5"),
        ("fake-gemini", "gemini-2.5-pro"),
    ],
)
def test_a_stream_closed_early_but_cleanly_is_an_error_not_a_short_answer(
    world: World, provider_slug: str, upstream: str
) -> None:
    world.catalog({"models": [model("test/short")], "endpoints": [
        endpoint("test/short", provider_slug, f"{upstream}@end_after=5")]})  # fmt: skip

    with httpx.stream("POST", f"{world.gateway_url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.key}"},
                      json={"model": "test/short", "stream": True, "messages": [{"role": "user", "content": "Tell a long story"}]}) as response:  # fmt: skip
        lines = sse_lines(response)

    assert lines[-1] == "data: [DONE]"
    error = orjson.loads(lines[-2].removeprefix("data: "))["error"]
    assert error["type"] == "upstream_error" and "ended before" in error["message"]
    first = orjson.loads(lines[0].removeprefix("data: "))
    record = world.usage_record(first["id"])
    assert (record.status, record.error_type) == ("failed", "upstream_error_mid_stream")
    assert record.completion_tokens > 0  # billed for what was relayed, as any mid-stream failure


def test_mid_stream_failure_on_messages_is_an_error_event(world: World) -> None:
    world.catalog(
        {
            "models": [model("test/cut")],
            "endpoints": [endpoint("test/cut", "fake-openai", "gpt-4o@disconnect_after=4")],
        }
    )

    with httpx.stream("POST", f"{world.gateway_url}/v1/messages", headers={"x-api-key": world.key},
                      json={"model": "test/cut", "max_tokens": 100, "stream": True,
                            "messages": [{"role": "user", "content": "Tell a long story"}]}) as response:  # fmt: skip
        lines = list(response.iter_lines())

    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "error"


def test_client_disconnect_cancels_the_upstream_stream_and_bills_what_was_generated(
    world: World,
) -> None:
    world.catalog(
        {
            "models": [model("test/slowstream")],
            "endpoints": [endpoint("test/slowstream", "fake-openai", "gpt-4o@chunk_delay=100")],
        }
    )

    with httpx.stream("POST", f"{world.gateway_url}/v1/chat/completions", headers={"Authorization": f"Bearer {world.key}"},
                      json={"model": "test/slowstream", "stream": True,
                            "messages": [{"role": "user", "content": "Tell a long story"}]}) as response:  # fmt: skip
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        next(line for line in lines if line.startswith("data: "))
    generation_id = orjson.loads(first.removeprefix("data: "))["id"]

    upstream = poll(
        lambda: next(
            (r for r in world.upstream_requests("/v1/chat/completions") if r["disconnected"]), None
        )
    )
    assert upstream["completed"] is False and upstream["chunks_sent"] < 20
    record = world.usage_record(generation_id)
    assert record.status == "aborted" and record.error_type == "client_disconnected"
    assert record.completion_tokens > 0 and record.cost > 0
    # Billed for what was generated: not 0, and not the maximum that was held.
    hold = Reservation.objects.get(generation_id=generation_id)
    assert record.cost < hold.amount and hold.state == "settled"
    assert LedgerEntry.objects.get(idempotency_key=f"usage:{generation_id}").amount == -record.cost
