"""What an organization's own host is billed when its counts are missing or too low: an estimate
of what its model generated, the same for an answer streamed or whole, and — on chat and on
embeddings alike — never below the estimate when the host counts too few tokens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from billing.models import UsageFlag, UsageRecord
from tests.routing.servers import poll
from tests.routing.world import World, base_catalog, endpoint, model
from tests.security.own_host import OwnHost, own_host_serving, stream_chunk

# A function call with a long name and a custom (free-form) call with a long input: before, a
# whole answer counted no tool name and a stream no custom input.
CALLS = [
    {"id": "call_1", "type": "function",
     "function": {"name": "look_up_the_weather_in_a_city_by_its_full_name" * 4,
                  "arguments": '{"city": "Paris"}'}},
    {"id": "call_2", "type": "custom",
     "custom": {"name": "run_sql", "input": "SELECT name FROM cities WHERE country = 'FR'" * 8}},
]  # fmt: skip


@pytest.fixture
def own_host(world: World, settings: Any) -> Iterator[OwnHost]:
    app = OwnHost()
    with own_host_serving(world, settings, app):
        yield app


def _billed(world: World, generation_id: str) -> UsageRecord:
    return poll(lambda: UsageRecord.objects.filter(generation_id=generation_id).first())


def _chat(world: World, *, stream: bool) -> UsageRecord:
    body = {"model": "test/own", "max_tokens": 2000, "stream": stream,
            "messages": [{"role": "user", "content": "Weather in Paris? And its cities."}]}  # fmt: skip
    served = httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body,
                        headers={"Authorization": f"Bearer {world.key}"}, timeout=30)  # fmt: skip
    assert served.status_code == 200, served.text
    return _billed(world, served.headers["x-generation-id"])


def test_a_streamed_and_a_whole_answer_are_estimated_alike(world: World, own_host: OwnHost) -> None:
    """The same tool-calling answer, sent without usage, whole then streamed."""
    message = {"role": "assistant", "content": None, "tool_calls": CALLS}
    whole = {"id": "chatcmpl-own", "object": "chat.completion", "created": 1, "model": "own",
             "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}  # fmt: skip
    own_host.answer = ({"content-type": "application/json"}, orjson.dumps(whole))
    whole_record = _chat(world, stream=False)
    deltas = [{"role": "assistant"}] + [
        {"tool_calls": [call | {"index": i}]} for i, call in enumerate(CALLS)
    ]
    events = [stream_chunk(d, None) for d in deltas] + [stream_chunk({}, "tool_calls")]
    own_host.answer = (
        {"content-type": "text/event-stream"},
        b"".join(events) + b"data: [DONE]\n\n",
    )
    streamed_record = _chat(world, stream=True)

    generated = sum(len(c[c["type"]]["name"]) for c in CALLS) + len(
        CALLS[0]["function"]["arguments"]
    )
    generated += len(CALLS[1]["custom"]["input"])
    assert UsageFlag.USAGE_ESTIMATED in whole_record.flag_list
    assert UsageFlag.USAGE_ESTIMATED in streamed_record.flag_list
    # Old code: the whole answer 93 tokens (no names), the stream 51 (no custom input).
    assert whole_record.completion_tokens == streamed_record.completion_tokens
    assert whole_record.completion_tokens >= generated // 4


def test_an_own_hosts_embeddings_count_is_billed_no_lower_than_the_estimate(
    world: World, own_host: OwnHost
) -> None:
    """An own host counting 1 prompt token for eight inputs is billed the estimate, flagged, as a
    chat answer's count is (old code: 1 token billed, no flag)."""
    data = base_catalog(world.fake_url)
    data["models"] += [model("test/own"), model("test/own-embed", ["embeddings"])]
    data["endpoints"] += [endpoint("test/own", "fake-openai", "gpt-4o-mini"),
                          endpoint("test/own-embed", "fake-openai", "text-embedding-3-small")]  # fmt: skip
    world.catalog(data)
    answer = {"object": "list", "model": "text-embedding-3-small",
              "data": [{"object": "embedding", "index": i, "embedding": [0.5, -0.5]} for i in range(8)],
              "usage": {"prompt_tokens": 1, "total_tokens": 1}}  # fmt: skip
    own_host.answer = ({"content-type": "application/json"}, orjson.dumps(answer))
    inputs = [f"A sentence of some length about owls, number {i}." for i in range(8)]

    served = httpx.post(f"{world.gateway_url}/v1/embeddings",
                        json={"model": "test/own-embed", "input": inputs},
                        headers={"Authorization": f"Bearer {world.key}"}, timeout=30)  # fmt: skip

    assert served.status_code == 200, served.text
    record = _billed(world, served.headers["x-generation-id"])
    # Half the estimate (BILLING_OWN_HOST_FLOOR_SHARE); the old code: 1.
    assert record.prompt_tokens >= sum(len(text) for text in inputs) // 8
    assert served.json()["usage"]["prompt_tokens"] == record.prompt_tokens
    assert UsageFlag.USAGE_FLOORED in record.flag_list
