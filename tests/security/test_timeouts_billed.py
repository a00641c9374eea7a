"""A provider that timed out after it had the whole request bills that prompt, so the request is
billed it too (estimated, flagged ``usage_estimated``), as a call the client abandoned is; a
timeout before the request was written (a TLS handshake that never ends) stays free. Fallbacks
after a timeout are each billed only for what was sent to them, and the total stays within the
hold.

Before, every timeout was free: a prompt sent to a provider that never answered cost the
platform the provider's bill, as often as a client liked.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from billing.models import LedgerEntry, Reservation, UsageRecord
from routerhub.money import money
from tests.routing.servers import poll
from tests.routing.world import World, base_catalog, endpoint, model, provider
from tests.security.raw_upstream import RawUpstream, holds

PROMPT = "Explain the migration routes of every whale species, ocean by ocean. " * 300
M = Decimal(1_000_000)


def _catalog(world: World, *upstreams: tuple[str, str, str]) -> None:
    """``test/slow`` and ``test/slow-embed``: one endpoint per (base URL, upstream model, input
    price), in that order, each its own provider."""
    data = base_catalog(world.fake_url)
    data["models"] += [model("test/slow"), model("test/slow-embed", ["embeddings"])]
    for index, (base_url, upstream, price) in enumerate(upstreams):
        data["providers"].append(provider(f"slow-{index}", "openai", world.fake_url))
        data["providers"][-1]["base_url"] = base_url
        fault = upstream.partition("@")[1:]
        data["endpoints"] += [
            endpoint("test/slow", f"slow-{index}", upstream, price, "50"),
            endpoint("test/slow-embed", f"slow-{index}", "text-embedding-3-small" + "".join(fault),
                     price, "0"),
        ]  # fmt: skip
    world.catalog(data)


def _send(world: World, path: str, body: dict[str, Any], providers: int) -> httpx.Response:
    order = {"order": [f"slow-{i}" for i in range(providers)], "allow_fallbacks": True}
    model_id = "test/slow-embed" if path == "/v1/embeddings" else "test/slow"
    return httpx.post(
        f"{world.gateway_url}{path}",
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": model_id, "provider": order, **body},
        timeout=30,
    )


def _record(world: World) -> UsageRecord:
    return poll(lambda: UsageRecord.objects.filter(organization=world.organization).first())


def _ledger_matches_and_within_hold(record: UsageRecord) -> None:
    entry = LedgerEntry.objects.filter(idempotency_key=f"usage:{record.generation_id}").first()
    assert (entry.amount if entry else 0) == -record.cost
    assert record.cost <= Reservation.objects.get(generation_id=record.generation_id).amount
    assert "over_hold" not in record.flag_list


_CHAT = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 10}
_KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", _CHAT),
    "stream": ("/v1/chat/completions", {"stream": True, **_CHAT}),
    "embeddings": ("/v1/embeddings", {"input": [PROMPT]}),
}


@pytest.mark.parametrize("kind", list(_KINDS))
def test_a_provider_that_never_answers_bills_the_prompt_it_was_sent(
    world: World, settings, kind: str
) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.5
    _catalog(world, (f"{world.fake_url}/v1", "gpt-4o@timeout", "10"))
    path, body = _KINDS[kind]

    answer = _send(world, path, body, providers=1)

    assert answer.status_code == 408, answer.text[:300]
    assert world.upstream_requests("/v1/")  # the provider had it
    record = _record(world)
    assert (record.status, record.error_type) == ("failed", "upstream_timeout")
    assert record.provider == "slow-0" and record.prompt_tokens > 1000
    assert record.cost == money(record.prompt_tokens * Decimal(10) / M) > 0
    assert "usage_estimated" in record.flag_list
    attempt = answer.json()["error"]["metadata"]["attempts"][0]
    assert attempt["error"] == "timeout"
    _ledger_matches_and_within_hold(record)


def test_a_timeout_before_the_request_was_written_is_free(
    world: World, settings, raw_servers: list[RawUpstream]
) -> None:  # type: ignore[no-untyped-def]
    """The provider accepts TCP and never completes the TLS handshake: the request is never
    written, the attempt times out connecting, and nothing is billed."""
    settings.GATEWAY_CONNECT_TIMEOUT = 0.5
    raw_servers.append(RawUpstream(holds))
    _catalog(world, (f"{raw_servers[0].url('https')}/v1", "gpt-4o", "10"))

    answer = _send(world, "/v1/chat/completions", _CHAT, providers=1)

    assert answer.status_code == 408, answer.text[:300]
    record = _record(world)
    assert (record.cost, record.prompt_tokens) == (0, 0)


def test_a_timeout_then_a_fallback_bills_each_what_it_was_sent(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.5
    fake = f"{world.fake_url}/v1"
    _catalog(world, (fake, "gpt-4o@timeout", "10"), (fake, "gpt-4o", "2"))

    answer = _send(world, "/v1/chat/completions", _CHAT, providers=2)

    assert answer.status_code == 200, answer.text[:300]
    served = answer.json()
    assert served["provider"] == "slow-1"
    timed_out = served["fallbacks"][0]
    assert (timed_out["provider"], timed_out["error"]) == ("slow-0", "timeout")
    prompt = timed_out["billed"]["prompt_tokens"]
    assert prompt > 1000 and Decimal(timed_out["billed"]["cost"]) == money(prompt * 10 / M)
    usage = served["usage"]
    fallback = money((usage["prompt_tokens"] * 2 + usage["completion_tokens"] * 50) / M)
    record = _record(world)
    assert record.cost == fallback + money(prompt * 10 / M)
    assert Decimal(str(usage["cost"])) == record.cost  # the answer says what was charged
    assert "usage_estimated" in record.flag_list
    _ledger_matches_and_within_hold(record)


def test_timeouts_before_a_fallback_never_take_the_request_past_its_hold(
    world: World, settings
) -> None:  # type: ignore[no-untyped-def]
    """Four dear providers time out, each with the whole prompt; the hold is one call's worst
    case, so the prompts billed stop where the hold does — and so do the record's tokens: a
    timeout the hold left no room for adds none, one it left part of adds that part (before,
    every estimate's tokens were added in full: the record said ~52% more tokens than its cost
    paid for, and the key's tokens per minute counted them)."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.3
    fake = f"{world.fake_url}/v1"
    _catalog(world, *[(fake, "gpt-4o@timeout", "100")] * 4, (fake, "gpt-4o", "100"))

    answer = _send(world, "/v1/chat/completions", _CHAT, providers=5)

    assert answer.status_code == 200, answer.text[:300]
    fallbacks = [f["billed"] for f in answer.json()["fallbacks"]]
    billed = [Decimal(f["cost"]) for f in fallbacks]
    assert len(billed) == 4 and billed[0] > 0
    record = _record(world)
    hold = Reservation.objects.get(generation_id=record.generation_id).amount
    assert sum(billed) < 4 * billed[0]  # the last ones took only what the hold had left
    assert record.cost == hold
    _ledger_matches_and_within_hold(record)
    for entry in fallbacks:  # each entry's tokens are what its charge paid for, rounded down
        tokens, cost = entry["prompt_tokens"], Decimal(entry["cost"])
        assert money(tokens * Decimal(100) / M) <= cost < money((tokens + 1) * Decimal(100) / M)
    # The hold ran out at the last: it adds part of its estimate's tokens, or none.
    assert fallbacks[-1]["prompt_tokens"] < fallbacks[0]["prompt_tokens"]
    served = answer.json()["usage"]
    assert record.prompt_tokens == served["prompt_tokens"] + sum(
        entry["prompt_tokens"] for entry in fallbacks
    )
    priced = (record.prompt_tokens * Decimal(100) + record.completion_tokens * Decimal(50)) / M
    assert money(priced) <= record.cost < money(priced + Decimal(4 * 100) / M)


def _reasoning_catalog(world: World, base_url: str, upstream: str) -> None:
    """``test/slow`` as a ``hidden_reasoning`` model reasoning 1,000 tokens a second."""
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/slow") | {"hidden_reasoning": True})
    data["providers"].append(provider("slow-0", "openai", world.fake_url) | {"base_url": base_url})
    data["endpoints"].append(
        endpoint("test/slow", "slow-0", upstream, "10", "50", output_tokens_per_second=1000)
    )
    world.catalog(data)


@pytest.mark.parametrize("stream", [False, True])
def test_a_reasoning_model_that_times_out_bills_its_reasoning_time(
    world: World, settings, stream: bool
) -> None:  # type: ignore[no-untyped-def]
    """A ``hidden_reasoning`` model reasons (and its provider bills it) until the timeout: the
    attempt is billed its prompt and its time at the endpoint's speed, within the request's
    ``max_tokens``, as reasoning tokens (before: the prompt alone, 0 completion tokens)."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.5
    _reasoning_catalog(world, f"{world.fake_url}/v1", "o4-mini@timeout")
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 5000}

    answer = _send(world, "/v1/chat/completions", body | {"stream": stream}, providers=1)

    assert answer.status_code == 408, answer.text[:300]
    record = _record(world)
    assert (record.status, record.error_type) == ("failed", "upstream_timeout")
    assert 0 < record.completion_tokens <= 5000
    assert record.reasoning_tokens == record.completion_tokens
    priced = record.prompt_tokens * Decimal(10) + record.completion_tokens * Decimal(50)
    assert record.cost == money(priced / M)
    assert "usage_estimated" in record.flag_list
    _ledger_matches_and_within_hold(record)


def test_a_reasoning_model_never_reached_bills_nothing(
    world: World, settings, raw_servers: list[RawUpstream]
) -> None:  # type: ignore[no-untyped-def]
    """A TLS handshake that never ends: the provider never had the request, so neither its
    prompt nor any reasoning time is billed."""
    settings.GATEWAY_CONNECT_TIMEOUT = 0.5
    raw_servers.append(RawUpstream(holds))
    _reasoning_catalog(world, f"{raw_servers[0].url('https')}/v1", "o4-mini")

    answer = _send(world, "/v1/chat/completions", _CHAT, providers=1)

    assert answer.status_code == 408, answer.text[:300]
    record = _record(world)
    assert (record.cost, record.prompt_tokens, record.completion_tokens) == (0, 0, 0)
