"""An upstream failing 30% of the time at random — 500s, 429s, timeouts, connections cut or
answers ended early — with a healthy fallback: every request succeeds, or (a stream broken after
its first bytes reached the client) ends with API.md's SSE error; each is billed once, at the
provider that actually served it, as the fake upstream's own request log shows.

The faults are drawn from the request body and a fixed seed (``fail_rate`` in
routing/fake_upstream/faults.py), so every run meets the same faults on the same requests.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from typing import Any

import orjson
import pytest

from accounts.models import Organization
from billing.services import ledger_post
from routing.services import catalog_sync
from tests.factories import key_make, organization_make
from tests.reliability.books import (
    assert_charged_once_within_its_hold,
    assert_ledger_is_the_balance,
    records_by_token,
    settled_while_running,
)
from tests.reliability.live_gateway import LiveGateway
from tests.reliability.traffic import TOKEN, Call, Outcome, fire
from tests.routing.servers import poll
from tests.routing.world import endpoint, model, provider

REQUESTS = 200
PRIMARY, FALLBACK = "chaotic", "steady"  # provider slugs
UPSTREAM_MODEL = {PRIMARY: "gpt-4o-mini", FALLBACK: "claude-haiku"}
# How the gateway names each injected fault in the response's ``fallbacks`` list.
FALLBACK_ERRORS = {"status=500": "status_500", "status=429": "status_429", "timeout": "timeout"}


def chaos_catalog(fake_url: str) -> None:
    # The cheaper, failing endpoint comes first; the dearer healthy one is its fallback.
    catalog_sync(data={
        "providers": [provider(PRIMARY, "openai", fake_url), provider(FALLBACK, "anthropic", fake_url)],
        "models": [model("test/chaos")],
        "endpoints": [
            endpoint("test/chaos", PRIMARY, f"{UPSTREAM_MODEL[PRIMARY]}@fail_rate=0.3,seed=9", "1", "2"),
            endpoint("test/chaos", FALLBACK, UPSTREAM_MODEL[FALLBACK], "3", "15"),
        ],
    })  # fmt: skip


def attempts_by_token(upstream_requests: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The fake upstream's record of each request's attempts, in the order they arrived."""
    attempts: dict[str, list[dict[str, Any]]] = {}
    for request in upstream_requests:
        found = TOKEN.search(orjson.dumps(request.get("body")).decode())
        assert found, f"an upstream request without a request token: {request.get('body')}"
        attempts.setdefault(found.group(), []).append(request)
    return attempts


def expected_fallback_error(fault: str, stream: bool) -> str:
    kind = fault.partition("=")[0]
    if kind == "disconnect_after":  # the connection dropped before any content was relayed
        return "stream_error" if stream else "connection_error"
    if kind == "end_after":  # closed cleanly: a stream with no content, half a JSON body
        return "empty_stream" if stream else "malformed_response"
    return FALLBACK_ERRORS[fault]


def assert_served_where_the_upstream_log_says(
    outcome: Outcome, attempts: list[dict[str, Any]], record: Any
) -> None:
    token = outcome.call.token
    providers = [PRIMARY if a["model"] == UPSTREAM_MODEL[PRIMARY] else FALLBACK for a in attempts]
    faults = [a["fault"] for a in attempts]
    assert providers[0] == PRIMARY, (token, providers)  # the failing endpoint is always tried first
    if outcome.error is not None:
        # Cut after the first bytes reached the client: no fallback, an SSE error (API.md),
        # billed for what was generated at the provider that generated it.
        assert providers == [PRIMARY], (token, providers)
        assert faults[0].partition("=")[0] in {"disconnect_after", "end_after"}, (token, faults)
        assert outcome.call.stream, outcome
        expected = ({"type": "api_error"} if outcome.call.anthropic
                    else {"type": "upstream_error", "code": 502})  # fmt: skip
        assert expected.items() <= outcome.error.items(), outcome.error
        assert (record.status, record.error_type) == ("failed", "upstream_error_mid_stream")
        assert record.provider == PRIMARY
        return
    served_by = providers[-1]
    assert outcome.finished, outcome
    assert faults[-1] == "" and all(faults[:-1]), (token, faults)  # the first healthy answer won
    assert providers == ([PRIMARY] if faults[0] == "" else [PRIMARY, FALLBACK]), (token, faults)
    assert (record.status, record.provider) == ("succeeded", served_by), token
    assert record.cost == outcome.cost and record.cost > 0, (token, record.cost, outcome.cost)
    if outcome.provider:  # chat completions and non-streamed messages name the provider
        assert outcome.provider == served_by, (token, outcome.provider, served_by)
    if not outcome.call.anthropic:  # chat completions list the endpoints that failed first
        errors = [f["error"] for f in outcome.fallbacks]
        expected_errors = [expected_fallback_error(f, outcome.call.stream) for f in faults[:-1]]
        assert errors == expected_errors, (token, errors, faults)


@pytest.mark.timeout(300)
def test_random_upstream_faults_with_a_fallback_bill_each_request_once_where_it_was_served(
    start_live_gateway,  # type: ignore[no-untyped-def]
) -> None:
    organization: Organization = organization_make(name="Chaos")
    organization.prompt_logging = True  # the record keeps the prompt: its token finds it
    organization.save(update_fields=["prompt_logging"])
    ledger_post(organization=organization, kind="promotion", amount=Decimal("20"),
                idempotency_key="chaos-grant")  # fmt: skip
    key = key_make(organization)
    # The breaker stays closed so that every request meets the failing endpoint first.
    gateway: LiveGateway = start_live_gateway(
        chaos_catalog, GATEWAY_FIRST_BYTE_TIMEOUT="1.5", GATEWAY_BREAKER_FAILURES="1000000"
    )
    calls = [Call(index=i, key=key, model="test/chaos", anthropic=i % 4 >= 2, stream=i % 2 == 1)
             for i in range(REQUESTS)]  # fmt: skip

    outcomes = asyncio.run(fire(gateway.url, calls))

    statuses = Counter(o.status for o in outcomes)
    assert statuses == {200: REQUESTS}, (statuses, [o.body for o in outcomes if o.status != 200])
    served = [o for o in outcomes if o.error is None]
    poll(lambda: settled_while_running([organization], served), timeout=60)
    assert gateway.stop() == 0, gateway.log()
    attempts = attempts_by_token(gateway.upstream_requests())
    records = records_by_token([organization])
    assert set(records) == set(attempts) == {c.token for c in calls}
    for outcome in outcomes:
        record = records[outcome.call.token]
        assert record.generation_id == outcome.generation_id
        assert_served_where_the_upstream_log_says(outcome, attempts[outcome.call.token], record)
        assert_charged_once_within_its_hold(record)
    assert_ledger_is_the_balance(organization)
    # The seed gives this run every kind of fault, both outcomes of a cut stream, and both
    # providers serving.
    drawn = Counter(a[0]["fault"].partition("=")[0] for a in attempts.values())
    assert {"status", "timeout", "disconnect_after", "end_after"} <= set(drawn), drawn
    cut_streams = Counter(attempts[o.call.token][0]["fault"].partition("=")[0]
                          for o in outcomes if o.error is not None)  # fmt: skip
    assert set(cut_streams) == {"disconnect_after", "end_after"}, cut_streams
    assert {r.provider for r in records.values()} == {PRIMARY, FALLBACK}
    assert 0 < len(served) < REQUESTS
