"""Prompt caching (``cache_control``) end to end: the ``anthropic`` SDK on ``/v1/messages`` and
the ``openai`` SDK with OpenRouter's marked content parts, against the live gateway and the fake
upstream, which keeps Anthropic's cache (a marked prefix is written once, then read)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import pytest

from billing.pricing import CacheCounts, TokenPrices, reservation_amount, usage_cost
from routerhub.money import money
from tests.routing.world import World

EPHEMERAL = {"type": "ephemeral"}
# test/claude in the test catalog: USD per 1M tokens.
INPUT, CACHED, OUTPUT = Decimal("3"), Decimal("0.3"), Decimal("15")
M = Decimal(1_000_000)
TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def long_context() -> str:
    """A document unique to the test (the fake's cache lives as long as the session)."""
    return f"Reference manual {uuid.uuid4().hex}. " + "The owl hunts at night. " * 200


def expected_cost(usage: Any, hour: bool = False) -> Decimal:
    """Anthropic's usage priced as Anthropic prices it: reads at the cached price, writes at
    1.25x (5m) or 2x (1h) the input price."""
    write = INPUT * (Decimal(2) if hour else Decimal("1.25"))
    return money(
        (
            usage.input_tokens * INPUT
            + usage.cache_read_input_tokens * CACHED
            + usage.cache_creation_input_tokens * write
            + usage.output_tokens * OUTPUT
        )
        / M
    )


def marked_request(document: str, ttl: str | None = None) -> dict[str, Any]:
    mark = EPHEMERAL | ({"ttl": ttl} if ttl else {})
    return {
        "model": "test/claude",
        "max_tokens": 100,
        "system": [
            {"type": "text", "text": "You answer from the manual."},
            {"type": "text", "text": document, "cache_control": mark},
        ],
        # The tool comes first in the cached prefix: the document's unique title keeps another
        # test's cached tool from being read here. Anthropic: 1h marks before 5m ones.
        "tools": [TOOL | {"description": document[:60], "cache_control": mark}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Question one about owls", "cache_control": EPHEMERAL}
                ],
            }
        ],
    }


def test_marks_reach_anthropic_and_the_second_call_reads_at_the_cached_price(
    world: World,
) -> None:
    request = marked_request(long_context())
    first = world.anthropic_client().messages.create(**request)
    sent = world.last_upstream("/v1/messages")["body"]
    second = world.anthropic_client().messages.create(**request)

    assert sent["system"] == [
        {"type": "text", "text": "You answer from the manual."},
        {"type": "text", "text": request["system"][1]["text"], "cache_control": EPHEMERAL},
    ]
    assert sent["tools"][0]["cache_control"] == EPHEMERAL
    assert sent["messages"][0]["content"][0]["cache_control"] == EPHEMERAL
    assert first.usage.cache_creation_input_tokens > 1000
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    first_record, second_record = (world.usage_record(m.id) for m in (first, second))
    assert first_record.cost == expected_cost(first.usage)  # the write at 1.25x
    assert second_record.cost == expected_cost(second.usage)  # the read at the cached price
    assert second_record.cached_tokens == second.usage.cache_read_input_tokens
    assert second_record.cost < first_record.cost


def test_an_hour_mark_writes_at_twice_the_input_price_streamed(world: World) -> None:
    with world.anthropic_client().messages.stream(**marked_request(long_context(), "1h")) as stream:
        final = stream.get_final_message()

    sent = world.last_upstream("/v1/messages")["body"]
    assert sent["system"][1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert final.usage.cache_creation is not None
    assert final.usage.cache_creation.ephemeral_1h_input_tokens > 1000
    record = world.usage_record(final.id)
    hour = final.usage.cache_creation.ephemeral_1h_input_tokens
    five = final.usage.cache_creation_input_tokens - hour
    assert record.cost == money(
        (
            final.usage.input_tokens * INPUT
            + final.usage.cache_read_input_tokens * CACHED
            + five * INPUT * Decimal("1.25")
            + hour * INPUT * 2
            + final.usage.output_tokens * OUTPUT
        )
        / M
    )
    assert "over_hold" not in record.flag_list


def test_five_marks_are_refused_as_anthropic_refuses_them(world: World) -> None:
    request = marked_request(long_context())
    request["messages"] = [
        {"role": "user", "content": [{"type": "text", "text": f"part {i}", "cache_control": EPHEMERAL}
                                     for i in range(3)]},
    ]  # fmt: skip

    with pytest.raises(anthropic.BadRequestError) as refused:
        world.anthropic_client().messages.create(**request)

    error = refused.value.body["error"]  # type: ignore[index]
    assert error["param"] == "cache_control"
    assert "A maximum of 4 blocks with cache_control may be provided. Found 5" in error["message"]
    assert world.upstream_requests("/v1/messages") == []


def test_an_hour_mark_after_a_five_minute_one_is_refused_as_anthropic_refuses_it(
    world: World,
) -> None:
    request = marked_request(long_context(), "1h")
    request["tools"] = [TOOL | {"cache_control": EPHEMERAL}]  # 5m on tools, then 1h on system

    with pytest.raises(anthropic.BadRequestError) as refused:
        world.anthropic_client().messages.create(**request)
    assert world.upstream_requests("/v1/messages") == []  # refused before Anthropic
    upstream = httpx.post(
        f"{world.fake_url}/v1/messages",
        json=request | {"model": "claude-sonnet-4-5"},
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
    )

    error = refused.value.body["error"]  # type: ignore[index]
    assert error["param"] == "cache_control"
    assert 'has ttl "1h" after tools[0].cache_control with ttl "5m"' in error["message"]
    assert upstream.status_code == 400
    assert (
        "system.1.cache_control.ttl: a ttl='1h' cache_control block must not come after"
        in (upstream.json()["error"]["message"])
    )


def test_openrouter_marked_parts_reach_anthropic_and_report_reads_and_writes(world: World) -> None:
    document = long_context()
    messages: Any = [
        {"role": "system", "content": [{"type": "text", "text": document, "cache_control": EPHEMERAL}]},
        {"role": "user", "content": [{"type": "text", "text": "Question about owls", "cache_control": EPHEMERAL}]},
    ]  # fmt: skip
    client = world.openai_client()
    first = client.chat.completions.create(model="test/claude", messages=messages, max_tokens=50)
    sent = world.last_upstream("/v1/messages")["body"]
    second = client.chat.completions.create(model="test/claude", messages=messages, max_tokens=50)

    assert sent["system"] == [{"type": "text", "text": document, "cache_control": EPHEMERAL}]
    assert sent["messages"][0]["content"][0]["cache_control"] == EPHEMERAL
    assert first.usage is not None and second.usage is not None
    written = first.usage.prompt_tokens_details.cache_write_tokens  # type: ignore[union-attr]
    assert written > 1000
    assert first.usage.prompt_tokens_details.cached_tokens == 0  # type: ignore[union-attr]
    assert second.usage.prompt_tokens_details.cached_tokens == written  # type: ignore[union-attr]
    assert second.usage.prompt_tokens_details.cache_write_tokens == 0  # type: ignore[union-attr]
    uncached = first.usage.prompt_tokens - written
    assert world.usage_record(first.id).cost == money(
        (uncached * INPUT + written * INPUT * Decimal("1.25") + first.usage.completion_tokens * OUTPUT) / M
    )  # fmt: skip


def test_marks_to_an_openai_upstream_are_dropped_and_said_so(world: World) -> None:
    messages: Any = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief.", "cache_control": EPHEMERAL}]},
        {"role": "user", "content": "Hello"},
    ]  # fmt: skip
    raw = world.openai_client().chat.completions.with_raw_response.create(
        model="test/gpt", messages=messages, max_tokens=20
    )

    assert raw.headers["x-routerhub-dropped"] == "cache_control"
    sent = world.last_upstream("/v1/chat/completions")["body"]
    assert sent["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "Be brief."}],
    }
    assert "cache_control" not in str(sent)


def test_an_hour_mark_holds_twice_the_prompt_price() -> None:
    prices = TokenPrices(INPUT / M, OUTPUT / M, CACHED / M)
    all_written = usage_cost(
        prices,
        prompt_tokens=10_000,
        completion_tokens=100,
        cache=CacheCounts(write=10_000, write_1h=10_000),
    )
    held = reservation_amount(prices, prompt_tokens=10_000, max_output_tokens=100, cache_ttl="1h")

    assert held == money((10_000 * INPUT * 2 + 100 * OUTPUT) / M)
    assert held == all_written  # the worst case, exactly


def test_tool_results_assistant_turns_and_message_marks_land_on_anthropic_blocks() -> None:
    from routing.ingress.anthropic import messages_request_to_canonical
    from routing.providers.anthropic import AnthropicAdapter
    from routing.providers.base import Target

    hour = {"type": "ephemeral", "ttl": "1h"}
    canonical = messages_request_to_canonical({
        "model": "test/claude", "max_tokens": 50, "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Looking.", "cache_control": hour},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "4C", "cache_control": EPHEMERAL},
            ]},
        ]})  # fmt: skip
    canonical["messages"].append({"role": "user", "content": "Thanks", "cache_control": EPHEMERAL})
    target = Target("https://up.example", "claude-sonnet-4-5", None, 50)

    turns = AnthropicAdapter().build_request(canonical, target, stream=False).body["messages"]

    assert turns[1]["content"][0] == {
        "type": "text",
        "text": "Looking.",
        "cache_control": hour,
    }
    assert "cache_control" not in turns[1]["content"][1]  # the tool_use, unmarked
    assert turns[2]["content"][0]["type"] == "tool_result"
    assert turns[2]["content"][0]["cache_control"] == EPHEMERAL
    assert turns[2]["content"][1] == {"type": "text", "text": "Thanks", "cache_control": EPHEMERAL}


def test_a_stream_keeps_its_hour_writes_and_a_malformed_breakdown_bills() -> None:
    from routing.providers.anthropic import usage_from_anthropic

    totals = {"input_tokens": 5, "cache_creation_input_tokens": 3000, "cache_read_input_tokens": 0}
    start = usage_from_anthropic(
        totals | {"output_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": 2000}}
    )
    final = usage_from_anthropic(totals | {"output_tokens": 40}, start)  # message_delta
    odd = usage_from_anthropic(totals | {"cache_creation": "5m"})

    assert final is not None and odd is not None
    assert (final.cache_write_tokens, final.cache_write_1h_tokens) == (3000, 2000)
    assert (odd.cache_write_tokens, odd.cache_write_1h_tokens, odd.prompt_tokens) == (3000, 0, 3005)


def test_a_marked_call_keeps_its_mark_and_a_top_level_mark_reaches_anthropic(
    world: World,
) -> None:
    request = {
        "model": "test/claude",
        "max_tokens": 50,
        "cache_control": EPHEMERAL,  # Anthropic's automatic caching
        "messages": [
            {"role": "user", "content": "Weather in Oslo and Bergen?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"},
                 "cache_control": EPHEMERAL},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Bergen"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "4C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "7C"},
            ]},
        ],
        "tools": [TOOL],
    }  # fmt: skip

    world.anthropic_client().messages.create(**request)  # type: ignore[arg-type]

    sent = world.last_upstream("/v1/messages")["body"]
    assert sent["cache_control"] == EPHEMERAL
    assert sent["messages"][1]["content"][-1]["cache_control"] == EPHEMERAL  # the turn's last


def test_a_message_mark_and_its_last_parts_mark_are_one_breakpoint(world: World) -> None:
    mark: Any = {"cache_control": EPHEMERAL}
    messages: Any = [
        {"role": "system", "content": [{"type": "text", "text": long_context()} | mark]},
        {"role": "user", "content": [
            {"type": "text", "text": "One"} | mark,
            {"type": "text", "text": "Two"} | mark,
            {"type": "text", "text": "Three"} | mark,
        ]} | mark,
    ]  # fmt: skip

    answer = world.openai_client().chat.completions.create(
        model="test/claude", messages=messages, max_tokens=20
    )

    assert answer.choices[0].message.content
    sent = world.last_upstream("/v1/messages")["body"]
    assert str(sent).count("cache_control") == 4  # the 4 Anthropic allows


def test_the_hold_reads_the_marks_once_for_many_anthropic_candidates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from routing.gateway import token_bounds
    from routing.gateway.catalog_cache import EndpointInfo
    from routing.gateway.planning import Candidate

    scans: list[int] = []
    real = token_bounds.longest_ttl
    monkeypatch.setattr(token_bounds, "longest_ttl", lambda body: scans.append(1) or real(body))
    endpoint = EndpointInfo(
        1, "test/claude", "fake-anthropic", "Fake", "anthropic", "https://up.example", "", {},
        "claude-sonnet-4-5", TokenPrices(INPUT / M, OUTPUT / M, CACHED / M), 200_000, 8192,
        True, True, True, True, True, False, frozenset(), False,
    )  # fmt: skip
    body = marked_request("A manual.", "1h")

    held = token_bounds.reservation_max(body, [Candidate(endpoint, None, False)] * 3, 10_000)

    assert scans == [1]
    assert held == money((10_000 * INPUT * 2 + 100 * OUTPUT) / M)
