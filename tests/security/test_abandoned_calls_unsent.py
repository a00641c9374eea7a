"""A call is billed its prompt when its client leaves only if a provider has that prompt.

Before, the gateway marked a call "sent" before it connected (a TLS handshake, a pooled
connection's wait) and kept the mark while a provider's refusal trickled in: a client that left
then was billed a prompt no provider had, or one the provider had refused. ``/v1/completions``
with several prompts billed them all even when one prompt's call had already failed.
"""

from __future__ import annotations

from typing import Any

import pytest

from billing.models import UsageRecord
from tests.routing.servers import poll
from tests.routing.world import World, base_catalog, endpoint, model, provider
from tests.security.raw_upstream import (
    Handler,
    RawUpstream,
    fails_prompts_with,
    holds,
    reads_and_hangs,
    refuses_slowly,
)

PROMPT = "Describe the tides of every sea on the planet, one by one. " * 300


def _raw_catalog(world: World, servers: list[RawUpstream], *urls: str) -> None:
    """``test/raw`` (and ``test/raw-embed``): one endpoint per URL, in that order, each its own
    provider and price."""
    data = base_catalog(world.fake_url)
    data["models"] += [model("test/raw"), model("test/raw-embed", ["embeddings"])]
    for index, url in enumerate(urls):
        data["providers"].append(provider(f"raw-{index}", "openai", world.fake_url))
        data["providers"][-1]["base_url"] = f"{url}/v1"
        price = str(10 + index)
        data["endpoints"] += [
            endpoint("test/raw", f"raw-{index}", "gpt-4o", price, "50"),
            endpoint("test/raw-embed", f"raw-{index}", "text-embedding-3-small", price, "0"),
        ]
    world.catalog(data)


def _serve(servers: list[RawUpstream], handler: Handler) -> RawUpstream:
    servers.append(RawUpstream(handler))
    return servers[-1]


def _leave(world: World, path: str, body: dict[str, Any]) -> UsageRecord:
    """Send, leave after a second without an answer, and return the request's record."""
    order = {"order": [f"raw-{i}" for i in range(4)], "allow_fallbacks": True}
    model_id = "test/raw-embed" if path == "/v1/embeddings" else "test/raw"
    body = {"model": model_id, "provider": order, **body}
    world.client_leaves(path, body, after=1.0)
    record = poll(lambda: UsageRecord.objects.filter(organization=world.organization).first())
    assert (record.status, record.error_type) == ("aborted", "client_disconnected")
    return record


_CHAT = {"messages": [{"role": "user", "content": PROMPT}]}
_KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", _CHAT),
    "stream": ("/v1/chat/completions", {"stream": True, **_CHAT}),
    "embeddings": ("/v1/embeddings", {"input": [PROMPT]}),
}


@pytest.mark.parametrize("kind", list(_KINDS))
def test_a_request_never_written_to_the_provider_is_not_billed(
    world: World, raw_servers: list[RawUpstream], kind: str
) -> None:
    """The provider accepts TCP and never reads: over TLS the handshake never ends, so the
    request is never written. Billed 0; the same provider reading the request over plain HTTP
    has the prompt, and bills it."""
    _raw_catalog(world, raw_servers, _serve(raw_servers, holds).url("https"))
    path, body = _KINDS[kind]

    record = _leave(world, path, body)

    assert record.cost == 0 and record.prompt_tokens == 0, (record.cost, record.provider)


@pytest.mark.parametrize("kind", list(_KINDS))
def test_a_request_the_provider_read_is_billed_its_prompt(
    world: World, raw_servers: list[RawUpstream], kind: str
) -> None:
    server = _serve(raw_servers, reads_and_hangs)
    _raw_catalog(world, raw_servers, server.url())
    path, body = _KINDS[kind]

    record = _leave(world, path, body)

    assert server.bodies and record.provider == "raw-0"
    assert record.prompt_tokens > 0 and record.cost > 0


@pytest.mark.parametrize("kind", ["chat", "stream"])
def test_a_request_the_provider_refused_is_not_billed_while_its_error_trickles(
    world: World, raw_servers: list[RawUpstream], kind: str
) -> None:
    """Every candidate fails fast (429, then 503) and their error bodies come a byte at a time;
    the client leaves meanwhile: cost 0."""
    first = _serve(raw_servers, refuses_slowly(429))
    second = _serve(raw_servers, refuses_slowly(503))
    _raw_catalog(world, raw_servers, first.url(), second.url())
    path, body = _KINDS[kind]

    record = _leave(world, path, body)

    assert first.bodies and record.cost == 0 and record.prompt_tokens == 0, record.provider


def test_a_failed_candidate_then_a_slow_fallback_is_billed_at_the_fallback_only(
    world: World, raw_servers: list[RawUpstream]
) -> None:
    failing = _serve(raw_servers, fails_prompts_with(b"Describe"))
    slow = _serve(raw_servers, reads_and_hangs)
    _raw_catalog(world, raw_servers, failing.url(), slow.url())

    record = _leave(world, "/v1/chat/completions", _CHAT)

    assert failing.bodies and slow.bodies
    assert record.provider == "raw-1" and record.prompt_tokens > 0
    # At the fallback's price ($11 per 1M prompt tokens), once.
    assert float(record.cost) == pytest.approx(record.prompt_tokens * 11 / 1_000_000, rel=0.01)


def test_several_prompts_bill_only_those_whose_call_did_not_fail(
    world: World, raw_servers: list[RawUpstream]
) -> None:
    """Two prompts to one provider: it refuses the long one at once and holds the short one.
    The client leaves: billed the short prompt only."""
    short = "Name one ocean current. " * 40
    server = _serve(raw_servers, fails_prompts_with(b"Describe"))
    _raw_catalog(world, raw_servers, server.url())

    record = _leave(world, "/v1/completions", {"prompt": [PROMPT, short]})

    assert len(server.bodies) == 2 and record.provider == "raw-0"
    assert 0 < record.prompt_tokens < len(PROMPT) // 8, record.prompt_tokens
