"""One deadline per request, ``GATEWAY_TOTAL_TIMEOUT`` from its start, across every candidate
(``attempts.deadline_left``/``deadline_stop``): chat (whole and streamed), embeddings, a list of
prompts on ``/v1/completions`` and pipeline steps. No call starts with under ``CALL_MIN_SECONDS``
(0.5 s) of it left; tests that need a call not started raise it to 3 s (``call_min``), so a loaded
machine has seconds of margin, not tenths.

Times come from the fake upstream's time faults (``routing.fake_upstream.faults``): ``delay=N``
answers (or, with ``status``, fails) after N ms, ``first_event_delay=N`` sends a stream's head at
once and its first event N ms later, ``timeout`` never answers. A fault's N is a lower bound on
the time a call takes, so "under 0.5 s left" is certain once it has ended, whatever the load;
no assertion is on a duration.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from billing.models import LedgerEntry, Reservation, UsageRecord
from tests.routing.servers import poll
from tests.routing.world import World, base_catalog, endpoint, model

_PROVIDERS = ("fake-openai", "fake-openai-b", "fake-anthropic")
_UPSTREAMS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku")
_PRICES = (("1", "2"), ("3", "5"), ("6", "9"))  # the cheapest is tried first


def _candidates(world: World, *faults: str, kind: str = "test/slow") -> None:
    """``kind`` at one endpoint per fault, tried in that order (fake-openai, fake-openai-b, then
    fake-anthropic, ever dearer), the fault after the upstream model's ``@``."""
    world.catalog(
        {
            "models": [model(kind)],
            "endpoints": [
                endpoint(kind, provider, f"{upstream}@{fault}" if fault else upstream, *prices)
                for provider, upstream, prices, fault in zip(
                    _PROVIDERS, _UPSTREAMS, _PRICES, faults, strict=False
                )
            ],
        }
    )


def _called(world: World) -> list[str]:
    """The upstream models the fake was asked for, in order."""
    return [r["model"] for r in world.upstream_requests("/v1") if r.get("model")]


def _post(world: World, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{world.gateway_url}{path}", json=body, timeout=30,
                      headers={"authorization": f"Bearer {world.key}"})  # fmt: skip


def _chat(world: World, *, stream: bool = False) -> httpx.Response:
    messages = [{"role": "user", "content": "Say hi"}]
    return _post(world, "/v1/chat/completions", {"model": "test/slow", "messages": messages,
                                                  "stream": stream})  # fmt: skip


def _settled(generation_id: str) -> UsageRecord:
    record = poll(lambda: UsageRecord.objects.filter(generation_id=generation_id).first())
    (entry,) = LedgerEntry.objects.filter(idempotency_key=f"usage:{record.generation_id}")
    assert entry.amount == -record.cost
    assert Reservation.objects.get(generation_id=generation_id).state == "settled"
    return record


def _untried(count: int, total: float, call_min: float = 0.5) -> str:
    others = "1 more provider was" if count == 1 else f"{count} more providers were"
    return f"{others} not tried: {_passed(total, call_min)}."


def _passed(total: float, call_min: float) -> str:
    return (
        f"the request's deadline (GATEWAY_TOTAL_TIMEOUT, {total:g} s)"
        f" had passed (or was under {call_min:g} s away)"
    )


def _billed_one_timeout(error: dict[str, Any]) -> None:
    """The request is billed the prompt of the one call that timed out with it, estimated."""
    record = _settled(error["metadata"]["generation_id"])
    (entry,) = record.trace_data["fallbacks"]
    assert (entry["provider"], entry["error"]) == ("fake-openai", "timeout")
    assert record.cost == Decimal(entry["billed"]["cost"]) > 0
    assert "usage_estimated" in record.flag_list


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_three_slow_candidates_end_at_one_deadline_not_three(
    world: World, settings: Any, stream: bool
) -> None:
    """Three endpoints that never answer: the first has the request until its deadline, the
    other two are never called and the 408 says so (3 s: the first must start within 2.5 s).
    Before, each had a whole
    GATEWAY_TOTAL_TIMEOUT (a stream's opening none at all): all three were called, one after the
    other, the request taking the timeout three times."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0  # only the request's deadline cuts the calls
    settings.GATEWAY_TOTAL_TIMEOUT = 3.0
    _candidates(world, "timeout", "timeout", "timeout")

    response = _chat(world, stream=stream)

    assert response.status_code == 408, response.text
    error = response.json()["error"]
    assert error["type"] == "upstream_timeout"
    assert error["message"].endswith(_untried(2, 3.0))
    assert _called(world) == ["gpt-4o-mini"]
    _billed_one_timeout(error)


def test_a_stream_whose_first_content_is_late_is_cut_at_the_deadline(
    world: World, settings: Any
) -> None:
    """The first endpoint opens the stream at once but sends its first event only after 5 s:
    the deadline covers the time to first content, not only connecting. It is cut at 3 s
    (billed its prompt) and the second is not tried. Before, the stream was served by the first
    endpoint 5 s later: opening a stream had no total deadline."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0
    settings.GATEWAY_TOTAL_TIMEOUT = 3.0
    _candidates(world, "first_event_delay=5000", "")

    response = _chat(world, stream=True)

    assert response.status_code == 408, response.text
    error = response.json()["error"]
    assert error["message"].endswith(_untried(1, 3.0))
    assert _called(world) == ["gpt-4o-mini"]
    poll(lambda: world.upstream_requests("/v1")[0]["disconnected"])  # the gateway hung up
    _billed_one_timeout(error)


def test_no_candidate_starts_with_under_call_min_seconds_left(
    world: World, settings: Any, call_min: float
) -> None:
    """The first endpoint fails (a 500) after 3.5 s of a 6 s deadline: under CALL_MIN_SECONDS
    (3 s here) is left, so the second, fast, is not called; the 502 names both. Before, it was
    called and answered."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0
    settings.GATEWAY_TOTAL_TIMEOUT = 6.0
    _candidates(world, "status=500,delay=3500", "")

    response = _chat(world)

    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["message"] == (
        "Every provider failed: fake-openai (status_500). " + _untried(1, 6.0, call_min)
    )
    assert _called(world) == ["gpt-4o-mini"]
    record = world.usage_record(error["metadata"]["generation_id"])
    assert (record.status, record.cost) == ("failed", 0)  # a provider's failure is not billed
    assert Reservation.objects.get(generation_id=record.generation_id).state != "held"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_fast_fallback_after_a_slow_failure_answers_while_time_remains(
    world: World, settings: Any, stream: bool
) -> None:
    """The first endpoint fails after 1 s of a 5 s deadline: the second answers, billed alone,
    the first's failure in the trace."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0
    settings.GATEWAY_TOTAL_TIMEOUT = 5.0
    _candidates(world, "status=500,delay=1000", "")

    response = _chat(world, stream=stream)

    assert response.status_code == 200, response.text
    assert _called(world) == ["gpt-4o-mini", "gpt-4o"]
    generation_id = response.headers["x-generation-id"]
    record = _settled(generation_id)
    assert (record.status, record.provider) == ("succeeded", "fake-openai-b")
    assert [e["error"] for e in record.trace_data["fallbacks"]] == ["status_500"]
    assert record.cost > 0


def test_embeddings_share_the_requests_deadline(world: World, settings: Any) -> None:
    """Two embedding endpoints that never answer: the first is cut at the deadline, the second
    never called. Before, each had a whole GATEWAY_TOTAL_TIMEOUT."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0
    settings.GATEWAY_TOTAL_TIMEOUT = 3.0
    data = base_catalog(world.fake_url)
    data["models"] += [model("test/embed", ["embeddings"])]
    data["endpoints"] += [
        endpoint("test/embed", "fake-openai", "text-embedding-3-small@timeout", "0.02", "0"),
        endpoint("test/embed", "fake-openai-b", "text-embedding-3-large@timeout", "0.05", "0"),
    ]
    world.catalog(data)

    response = _post(world, "/v1/embeddings", {"model": "test/embed", "input": "hello"})

    assert response.status_code == 408, response.text
    assert response.json()["error"]["message"].endswith(_untried(1, 3.0))
    assert _called(world) == ["text-embedding-3-small"]
    _billed_one_timeout(response.json()["error"])


def test_a_list_of_prompts_starts_no_candidate_with_under_call_min_seconds_left(
    world: World, settings: Any, call_min: float
) -> None:
    """``/v1/completions`` with two prompts: the first endpoint answers "Say hi" and fails "SLOW
    down" (a 500) after 3.5 s of a 6 s deadline; the second, fast, is not called with under
    CALL_MIN_SECONDS (3 s here) left. The 502 says so, and the request is billed the one answer that came, once.
    With the 0.5 s rule removed, the second endpoint was called and served both prompts."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0
    settings.GATEWAY_TOTAL_TIMEOUT = 6.0
    _candidates(world, "status=500,delay=3500,when=SLOW", "")
    client = world.openai_client()

    with pytest.raises(openai.APIStatusError) as raised:
        client.completions.create(model="test/slow", prompt=["Say hi", "SLOW down"])

    assert raised.value.status_code == 502
    error = raised.value.body
    assert isinstance(error, dict)
    assert _untried(1, 6.0, call_min) in error["message"]
    assert "1 of 2 prompts were answered by fake-openai" in error["message"]
    assert sorted(_called(world)) == ["gpt-4o-mini", "gpt-4o-mini"]
    record = _settled(error["metadata"]["generation_id"])
    (entry,) = record.trace_data["fallbacks"]
    assert (entry["error"], entry["answered"]) == ("status_500", "1 of 2 prompts")
    assert record.cost == Decimal(entry["billed"]["cost"]) > 0
    assert record.completion_tokens == entry["billed"]["completion_tokens"] > 0


def test_a_pipelines_steps_share_the_requests_deadline(world: World, settings: Any) -> None:
    """A cascade whose first step's two endpoints never answer: the first is cut at the
    request's deadline, the second endpoint and the next step are never called, and the 408
    says the deadline passed; the cut call's prompt is billed. Before, each endpoint of each step
    had a whole GATEWAY_TOTAL_TIMEOUT: both were called, then the second step answered (200)."""
    from accounts.models import KeyScope
    from tests.factories import key_client

    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0
    settings.GATEWAY_TOTAL_TIMEOUT = 3.0
    data = base_catalog(world.fake_url)
    data["models"] += [model("test/slow"), model("test/strong")]
    data["endpoints"] += [
        endpoint("test/slow", "fake-openai", "gpt-4o-mini@timeout", "1", "2"),
        endpoint("test/slow", "fake-openai-b", "gpt-4o@timeout", "3", "5"),
        endpoint("test/strong", "fake-openai-b", "gpt-5", "5", "20"),
    ]
    world.catalog(data)
    steps = [{"model": "test/slow", "gate": {"type": "non_empty"}}, {"model": "test/strong"}]
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    created = admin.post("/api/v1/pipelines", {"slug": "late", "kind": "cascade", "steps": steps},
                         format="json")  # fmt: skip
    assert created.status_code == 201

    messages = [{"role": "user", "content": "Say hi"}]
    response = _post(
        world, "/v1/chat/completions", {"model": "pipeline/late", "messages": messages}
    )

    assert response.status_code == 408, response.text
    error = response.json()["error"]
    assert "answered by the request's deadline (GATEWAY_TOTAL_TIMEOUT, 3 s)" in error["message"]
    assert _called(world) == ["gpt-4o-mini"]
    record = _settled(error["metadata"]["generation_id"])
    assert record.cost > 0 and "usage_estimated" in record.flag_list


def test_a_timed_out_reasoning_call_shows_the_reasoning_it_is_billed(
    world: World, settings: Any
) -> None:
    """A model that reasons unseen, timing out with the request: its fallback entry shows the
    reasoning billed (``timeouts.timeouts_charge``), as the record's tokens count it."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0
    settings.GATEWAY_TOTAL_TIMEOUT = 2.0
    world.catalog(
        {
            "models": [model("test/slow")],
            "endpoints": [
                endpoint(
                    "test/slow",
                    "fake-openai",
                    "o3@timeout",
                    "2",
                    "8",
                    hidden_reasoning=True,
                    output_tokens_per_second=100,
                ),
            ],
        }
    )

    response = _chat(world)

    assert response.status_code == 408, response.text
    record = _settled(response.json()["error"]["metadata"]["generation_id"])
    (entry,) = record.trace_data["fallbacks"]
    assert entry["billed"]["completion_tokens"] > 0  # ~2 s at 100 tokens a second
    assert record.completion_tokens == entry["billed"]["completion_tokens"]
    assert record.cost == Decimal(entry["billed"]["cost"])
