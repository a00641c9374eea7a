"""A provider — above all a tenant's own host — that reports token counts that cannot be true
(negative, fractional, not numbers, beyond any context window) neither makes its answer unbillable
nor sets its price: the answer is served and billed on an estimate from the text, flagged
``usage_clamped``; only a response with nothing to serve is a 502, and it is not billed."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from billing.models import CreditAccount, LedgerEntry, Reservation, UsageRecord
from billing.pricing import TokenPrices, usage_cost
from routing.fake_upstream.answers import count_tokens
from routing.gateway.token_bounds import estimate_prompt_tokens
from routing.models import Provider
from routing.services import provider_key_create
from tests.routing.servers import poll
from tests.routing.world import World, endpoint, model
from training.tokens import tokens_from_chars

NEGATIVE = "report_prompt=-5,report_completion=-3"
PROMPT = "Explain in a few words why the sky is blue."
MAX_TOKENS = 64  # the output bound: an estimate of the answer's tokens is at most this


def own_host(world: World, settings: Any, fault: str, **prices: str) -> str:
    """A model served by the organization's own OpenAI-compatible host, answering with ``fault``."""
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the "own host" is the local fake upstream
    world.catalog({"models": [model("test/own")],
                   "endpoints": [endpoint("test/own", "fake-openai", f"gpt-4o-mini@{fault}", **prices)]})  # fmt: skip
    provider_key_create(organization=world.organization, provider=Provider.objects.get(slug="fake-openai"),
                        secret="sk-own-host-4242", base_url=f"{world.fake_url}/v1")  # fmt: skip
    return "test/own"


def platform_model(world: World, style: str, fault: str) -> str:
    upstream = {"anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}[style]
    world.catalog({"models": [model(f"test/{style}-broken")],
                   "endpoints": [endpoint(f"test/{style}-broken", f"fake-{style}", f"{upstream}@{fault}")]})  # fmt: skip
    return f"test/{style}-broken"


def ask(world: World, model_id: str, *, stream: bool) -> tuple[int, str, list[dict[str, Any]]]:
    """Status, generation id and (for a stream) its events, or ([the JSON body]) otherwise."""
    body = {"model": model_id, "max_tokens": MAX_TOKENS, "stream": stream,
            "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip
    response = httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {world.key}"}, timeout=30)  # fmt: skip
    if not stream or response.status_code != 200:
        data = response.json()
        generation_id = response.headers.get("x-generation-id") or (
            data.get("error", {}).get("metadata", {}).get("generation_id", "")
        )
        return response.status_code, generation_id, [data]
    events = [orjson.loads(line[6:]) for line in response.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]  # fmt: skip
    return response.status_code, response.headers["x-generation-id"], events


def answer_text(events: list[dict[str, Any]], *, stream: bool) -> str:
    if not stream:
        return str(events[0]["choices"][0]["message"]["content"] or "")
    return "".join(c["delta"].get("content") or "" for e in events for c in e.get("choices", []))


def assert_billed_on_an_estimate(world: World, generation_id: str) -> UsageRecord:
    record = world.usage_record(generation_id)
    assert record.status == "succeeded"
    assert record.flag_list == ["usage_clamped"]
    assert record.prompt_tokens > 0 and record.completion_tokens > 0
    assert record.cost > 0
    charge = LedgerEntry.objects.get(idempotency_key=f"usage:{generation_id}")
    assert charge.amount == -record.cost
    return record


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    "fault",
    [
        NEGATIVE,
        "report_prompt=1.5",
        "report_prompt=1e12",
        'report_completion="many"',
        "report_completion=0",
    ],
    ids=["negative", "fraction", "absurd", "not-a-number", "no-token-for-an-answer"],
)
def test_an_own_host_reporting_impossible_usage_is_served_billed_and_flagged(
    world: World, settings: Any, fault: str, stream: bool
) -> None:
    model_id = own_host(world, settings, fault)

    status, generation_id, events = ask(world, model_id, stream=stream)

    assert status == 200, events
    assert answer_text(events, stream=stream)
    assert not any("error" in event for event in events), events
    record = assert_billed_on_an_estimate(world, generation_id)
    assert record.is_byok


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("style", ["anthropic", "gemini"])
def test_a_provider_of_any_wire_format_reporting_negative_usage_is_billed_and_flagged(
    world: World, style: str, stream: bool
) -> None:
    model_id = platform_model(world, style, NEGATIVE)

    status, generation_id, events = ask(world, model_id, stream=stream)

    assert status == 200, events
    assert answer_text(events, stream=stream)
    assert_billed_on_an_estimate(world, generation_id)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_no_answer_with_impossible_usage_is_a_502_and_not_billed(
    world: World, settings: Any, stream: bool
) -> None:
    model_id = own_host(world, settings, f"empty,{NEGATIVE}")
    before = CreditAccount.objects.get(organization=world.organization).balance

    status, generation_id, events = ask(world, model_id, stream=stream)

    if stream:  # the 200 was sent with the stream's head: the 502 is its error event
        assert status == 200 and events[-1]["error"]["code"] == 502, events
    else:
        assert status == 502, events
        attempts = events[0]["error"]["metadata"]["attempts"]
        assert [a["error"] for a in attempts] == ["unusable_response"]
        assert "cannot be true" in attempts[0]["detail"]
    record = world.usage_record(generation_id)
    assert record.status == "failed" and record.cost == 0
    assert not LedgerEntry.objects.filter(idempotency_key=f"usage:{generation_id}").exists()
    poll(lambda: not Reservation.objects.filter(state="held").exists())
    account = CreditAccount.objects.get(organization=world.organization)
    assert account.balance == before and account.reserved == Decimal(0)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_own_host_reporting_too_few_tokens_is_billed_its_estimates_and_flagged(
    world: World, settings: Any, stream: bool
) -> None:
    """An own host counts its own tokens, and the fee is a share of their price: its counts are
    billed no lower than their estimates. Before, it reported 1 and 1 and the fee was ~0."""
    model_id = own_host(world, settings, "report_prompt=1,report_completion=1")

    status, generation_id, events = ask(world, model_id, stream=stream)

    assert status == 200, events
    record = world.usage_record(generation_id)
    assert record.status == "succeeded" and record.is_byok
    assert record.flag_list == ["usage_floored"]
    # Each count raised to its share (BILLING_OWN_HOST_FLOOR_SHARE, ½) of its estimate.
    assert record.prompt_tokens >= math.ceil(tokens_from_chars(len(PROMPT)) / 2) > 1
    text = answer_text(events, stream=stream)
    assert (
        record.completion_tokens == math.ceil(min(tokens_from_chars(len(text)), MAX_TOKENS) / 2) > 1
    )
    assert LedgerEntry.objects.get(idempotency_key=f"usage:{generation_id}").amount == -record.cost


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_provider_reporting_few_tokens_is_billed_as_it_counts(world: World, stream: bool) -> None:
    """The platform's own providers are billed their counts, however far below an estimate."""
    model_id = platform_model(world, "anthropic", "report_prompt=1,report_completion=1")

    status, generation_id, events = ask(world, model_id, stream=stream)

    assert status == 200, events
    record = world.usage_record(generation_id)
    assert (record.prompt_tokens, record.completion_tokens) == (1, 1)
    assert record.flag_list == []


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_own_host_reporting_its_prompt_cached_pays_the_fee_on_the_whole_prompt(
    world: World, settings: Any, stream: bool
) -> None:
    """The fee is a share of the list price: an own host reporting every prompt token read from
    its cache (a tenth of the price here) does not shrink it. Before, billed at the cached price.
    Its counts are kept, in the record and the answer (the branch's first fix zeroed them)."""
    model_id = own_host(world, settings, "cached=100000", cached_input="0.1")

    status, generation_id, events = ask(world, model_id, stream=stream)

    assert status == 200, events
    record = world.usage_record(generation_id)
    assert record.is_byok and record.cached_tokens == record.prompt_tokens > 0
    if not stream:  # a stream sends usage only when asked (stream_options)
        shown = events[0]["usage"]["prompt_tokens_details"]["cached_tokens"]
        assert shown == record.cached_tokens
    prices = TokenPrices(Decimal("1e-6"), Decimal("2e-6"), Decimal("1e-7"))
    full = usage_cost(prices, prompt_tokens=record.prompt_tokens,
                      completion_tokens=record.completion_tokens, is_byok=True)  # fmt: skip
    assert record.cost == full > 0
    assert LedgerEntry.objects.get(idempotency_key=f"usage:{generation_id}").amount == -record.cost


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_honest_own_host_is_billed_its_counts_unflagged(
    world: World, settings: Any, stream: bool
) -> None:
    """Characters ÷ 4 is rough: a host counting with a real tokenizer (the fake's), below the
    estimate but above BILLING_OWN_HOST_FLOOR_SHARE (½) of it, is billed as it counts. Before,
    every count below the estimate was floored and flagged."""
    model_id = own_host(world, settings, "chunk_delay=0")  # no fault: its own counts

    status, generation_id, events = ask(world, model_id, stream=stream)

    assert status == 200, events
    record = world.usage_record(generation_id)
    assert record.flag_list == [] and record.is_byok
    text = answer_text(events, stream=stream)
    # The fake counts words (and 4 template tokens a message, 3 a prompt), as it reports them.
    assert (record.prompt_tokens, record.completion_tokens) == (
        count_tokens(PROMPT) + 7, count_tokens(text))  # fmt: skip
    assert record.completion_tokens < tokens_from_chars(len(text))  # below the old floor


@pytest.mark.parametrize(("share", "floored"), [(0.6, False), (0.4, True)])
def test_an_own_host_is_floored_only_below_the_share_of_its_estimate(
    world: World, settings: Any, share: float, floored: bool
) -> None:
    """Above half the prompt's estimate: billed as reported; below it: billed half the estimate,
    continuously (before, the whole estimate: a report at 0.49 billed twice one at 0.5)."""
    body = {"messages": [{"role": "user", "content": PROMPT}]}
    estimate = estimate_prompt_tokens(body)
    reported = round(estimate * share)
    model_id = own_host(world, settings, f"report_prompt={reported}")

    status, generation_id, events = ask(world, model_id, stream=False)

    assert status == 200, events
    record = world.usage_record(generation_id)
    assert record.flag_list == (["usage_floored"] if floored else [])
    assert record.prompt_tokens == (math.ceil(estimate / 2) if floored else reported)


def test_a_count_just_below_the_share_is_billed_just_above_it(world: World, settings: Any) -> None:
    """Continuous: a prompt reported one token below half its estimate is billed half of it, one
    more token (before, the whole estimate: about twice a report at half)."""
    estimate = estimate_prompt_tokens({"messages": [{"role": "user", "content": PROMPT}]})
    reported = math.ceil(estimate / 2) - 1
    model_id = own_host(world, settings, f"report_prompt={reported}")

    status, generation_id, events = ask(world, model_id, stream=False)

    assert status == 200, events
    record = world.usage_record(generation_id)
    assert record.flag_list == ["usage_floored"] and record.prompt_tokens == reported + 1


def test_an_honest_completion_is_not_raised_for_a_low_prompt(world: World, settings: Any) -> None:
    """Each count is floored alone: a prompt reported at 1 does not raise the host's honest
    completion count to its estimate (before, both were raised once either was low)."""
    model_id = own_host(world, settings, "report_prompt=1")

    status, generation_id, events = ask(world, model_id, stream=False)

    assert status == 200, events
    record = world.usage_record(generation_id)
    assert record.flag_list == ["usage_floored"]
    assert record.completion_tokens == count_tokens(answer_text(events, stream=False))


def test_an_own_hosts_price_tier_is_chosen_from_its_prompt_estimate(
    world: World, settings: Any
) -> None:
    """The prompt's estimate is one token over the long-context threshold; the host reports 0.6
    of it (above the floor's share, so billed as reported) and so under the threshold. Billed at
    the long tier, as the estimate says the prompt is (before: the short tier, half the fee)."""
    estimate = estimate_prompt_tokens({"messages": [{"role": "user", "content": PROMPT}]})
    reported = math.ceil(estimate * 0.6)
    tier = {"threshold": estimate - 1, "input": "2", "output": "4"}
    model_id = own_host(world, settings, f"report_prompt={reported}", long_context=tier)

    status, generation_id, events = ask(world, model_id, stream=False)

    assert status == 200, events
    record = world.usage_record(generation_id)
    assert record.flag_list == [] and record.prompt_tokens == reported < tier["threshold"]
    long = TokenPrices(Decimal(2) / 10**6, Decimal(4) / 10**6)
    expected = usage_cost(long, prompt_tokens=reported,
                          completion_tokens=record.completion_tokens, is_byok=True)  # fmt: skip
    assert record.cost == expected
