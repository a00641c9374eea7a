"""No overspend, no lost usage: 500 concurrent requests through two gateway worker processes
against two organizations' small balances and their keys' credit limits — chat completions and
Anthropic messages, streamed and not, some abandoned by the client before or during the answer.

tests/billing/test_gateway_budget.py proves the reservation arithmetic on one in-process server
with one kind of request; this proves the whole books under production concurrency: two
processes reserving from the same rows and settling in batches through the Redis stream.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from django.db.models import Sum
from django.utils import timezone

from accounts.models import ApiKey, Organization
from billing.models import KeySpendWindow, Reservation, UsageRecord
from billing.outbox import STREAM
from billing.services import ledger_post, reservations_sweep
from routing.services import catalog_sync
from tests.factories import key_make, organization_make
from tests.reliability.books import (
    assert_charged_once_within_its_hold,
    assert_ledger_is_the_balance,
    records_by_token,
    settled_while_running,
)
from tests.reliability.live_gateway import LiveGateway, redis_client
from tests.reliability.traffic import TOKEN, Call, Outcome, fire
from tests.routing.servers import poll
from tests.routing.world import endpoint, model, provider

REQUESTS = 500
# Each request holds ~0.0095 and costs ~0.004 (less when abandoned). Whatever the timing, alpha
# (250 requests) cannot afford all it is sent (402s) and beta's capped keys (~83 requests each)
# cannot either (403s); while hundreds are in flight the holds refuse more of both.
BALANCES = {"alpha": Decimal("0.40"), "beta": Decimal("1.00")}
KEYS = {  # name: (organization, daily credit limit or None)
    "alpha-open": ("alpha", None),
    "alpha-capped": ("alpha", Decimal("0.30")),
    "alpha-open-2": ("alpha", None),
    "beta-capped-1": ("beta", Decimal("0.10")),
    "beta-capped-2": ("beta", Decimal("0.10")),
    "beta-open": ("beta", None),
}
REFUSALS = {402: "insufficient_credits", 403: "key_limit_reached"}
KINDS = ("chat", "chat_stream", "messages", "messages_stream",
         "abort_early", "abort_waiting", "abort_mid_stream")  # fmt: skip
ABORTS = {"abort_early": "early", "abort_waiting": "waiting", "abort_mid_stream": "mid_stream"}
ABORT_AFTER_S = (0.05, 0.2, 0.5)  # early aborts land wherever the request is by then


def money_catalog(fake_url: str) -> None:
    # Dear per token (USD per 1M) so that a few requests exhaust a small balance; a delay and
    # slow chunks keep hundreds of requests in flight, holding credit, at the same time.
    upstreams = {
        "gpt": ("fake-openai", "gpt-4o-mini"),
        "claude": ("fake-anthropic", "claude-haiku"),
    }
    # Requests abandoned while waiting go to an endpoint that takes 5 s to answer.
    faults = {"": "delay=150,chunk_delay=20", "-slow": "delay=5000"}
    catalog_sync(data={
        "providers": [provider("fake-openai", "openai", fake_url),
                      provider("fake-anthropic", "anthropic", fake_url)],
        "models": [model(f"test/money-{name}{speed}") for name in upstreams for speed in faults],
        "endpoints": [endpoint(f"test/money-{name}{speed}", slug, f"{upstream}@{fault}", "100", "200")
                      for name, (slug, upstream) in upstreams.items() for speed, fault in faults.items()],
    })  # fmt: skip


def arrange() -> tuple[dict[str, Organization], dict[str, str]]:
    organizations = {}
    for name, balance in BALANCES.items():
        organization = organization_make(name=name.title())
        organization.prompt_logging = True  # the record keeps the prompt: its token finds it
        organization.save(update_fields=["prompt_logging"])
        ledger_post(organization=organization, kind="promotion", amount=balance,
                    idempotency_key=f"grant-{name}")  # fmt: skip
        organizations[name] = organization
    keys = {}
    for name, (org, limit) in KEYS.items():
        reset = "daily" if limit is not None else None
        keys[name] = key_make(organizations[org], name=name, limit=limit, limit_reset=reset)
    return organizations, keys


def calls(keys: dict[str, str]) -> list[Call]:
    """Every kind with every key, in turn; abandoned requests alternate between the two APIs."""
    names, rounds = list(KEYS), len(KINDS) * len(KEYS)
    out = []
    for i in range(REQUESTS):
        kind, turn = KINDS[i % len(KINDS)], i // len(KINDS)
        anthropic = kind.startswith("messages") or (kind in ABORTS and i // rounds % 2 == 1)
        slow = "-slow" if kind == "abort_waiting" else ""
        out.append(Call(
            index=i, key=keys[names[turn % len(names)]],
            model=f"test/money-{'claude' if anthropic else 'gpt'}{slow}",
            anthropic=anthropic, stream=kind.endswith("stream"), abort=ABORTS.get(kind, ""),
            abort_after_s=ABORT_AFTER_S[turn % len(ABORT_AFTER_S)],
        ))  # fmt: skip
    return out


def assert_client_view(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        if o.status is not None:
            assert o.request_id == o.call.request_id, o
        if o.status in (402, 403):
            error = o.error
            assert error is not None and error["code"] == o.status, o
            # /v1/messages names errors as Anthropic does and keeps RouterHub's name beside it.
            assert error.get("routerhub_type", error["type"]) == REFUSALS[o.status], o
        if o.status == 200 and not o.abandoned:
            assert o.finished and o.error is None and o.generation_id.startswith("gen-"), o
            assert o.cost is not None and o.cost > 0, o


def assert_books(organizations: dict[str, Organization], outcomes: list[Outcome]) -> None:
    orgs = list(organizations.values())
    records = records_by_token(orgs)
    sent = {o.call.token for o in outcomes}
    assert set(records) <= sent, f"records of requests nobody sent: {set(records) - sent}"
    for o in outcomes:
        record = records.get(o.call.token)
        if o.status in (402, 403):
            assert record is None, f"{o.call.token} was refused but has a usage record"
            continue
        if o.status == 200 and not o.abandoned:  # served: billed exactly what the client was told
            assert record is not None, f"{o.call.token} was served but has no usage record"
            assert (record.generation_id, record.status) == (o.generation_id, "succeeded")
            assert record.cost == o.cost, (o.call.token, record.cost, o.cost)
        elif record is None:  # abandoned before its hold: refused, to a client that had gone
            assert o.generation_id == "", f"{o.call.token} started an answer but has no record"
            continue
        else:  # abandoned: billed for what was generated, never past its hold
            assert record.status in {"aborted", "succeeded"}, (o.call.token, record.status)
            assert o.generation_id in ("", record.generation_id)
        assert_charged_once_within_its_hold(record)
    for organization in orgs:
        assert_ledger_is_the_balance(organization)
    for key in ApiKey.objects.filter(organization__in=orgs):
        spent = UsageRecord.objects.filter(key=key).aggregate(s=Sum("cost"))["s"] or 0
        if key.limit is not None:
            window = KeySpendWindow.objects.filter(key=key).first()
            if window is None:  # nothing was ever held against it: its organization's balance
                assert spent == 0, key.name  # refused all its requests first (seen once in CI)
                continue
            assert window.reserved == 0 and window.spent == spent, key.name
            assert spent <= key.limit, f"{key.name} spent {spent} past its limit {key.limit}"


def assert_abandoned_while_waiting_bills_the_prompt(
    gateway: LiveGateway, outcomes: list[Outcome]
) -> None:
    """Given up with credit held and the upstream still thinking: the gateway hangs up on the
    upstream, records the request as aborted and charges the prompt the provider had (estimated,
    within the hold), as the provider bills it; nothing of an answer."""
    waiting = [o for o in outcomes if o.call.abort == "waiting" and o.abandoned]
    tokens = {o.call.token for o in waiting}
    assert tokens, "no request was abandoned while the gateway held its credit"
    hung_up = {TOKEN.search(orjson.dumps(r["body"]).decode()).group(): r["disconnected"]  # type: ignore[union-attr]
               for r in gateway.upstream_requests()}  # fmt: skip
    assert all(hung_up[token] for token in tokens), "the gateway kept an abandoned upstream call"
    records = UsageRecord.objects.filter(prompt__regex="|".join(sorted(tokens)))
    assert len(records) == len(tokens)
    for record in records:
        assert (record.status, record.error_type) == ("aborted", "client_disconnected")
        assert record.cost > 0 and record.prompt_tokens > 0 and record.completion_tokens == 0
        assert "usage_estimated" in record.flag_list
        hold = Reservation.objects.get(generation_id=record.generation_id)
        assert hold.state == "settled" and hold.amount >= record.cost


@pytest.mark.timeout(300)
def test_concurrent_requests_on_two_workers_never_overspend_and_bill_each_request_once(
    start_live_gateway,  # type: ignore[no-untyped-def]
) -> None:
    organizations, keys = arrange()
    gateway: LiveGateway = start_live_gateway(money_catalog, GATEWAY_FIRST_BYTE_TIMEOUT="30")

    outcomes = asyncio.run(fire(gateway.url, calls(keys), fake_url=gateway.fake_url))

    statuses = [o.status for o in outcomes if not o.abandoned]
    assert set(statuses) <= {200, 402, 403}, (sorted(set(map(str, statuses))), gateway.log())
    assert {200, 402, 403} <= set(statuses), "the mix must include served, 402 and 403 requests"
    assert {o.call.abort for o in outcomes if o.abandoned} == set(ABORTS.values())
    assert_client_view(outcomes)
    served = [o for o in outcomes if o.status == 200 and not o.abandoned]
    poll(lambda: settled_while_running(list(organizations.values()), served), timeout=60)
    # make serve's topology: the workers only append, one dedicated settler process settles.
    settlers = gateway.settlers()
    assert len(settlers) == 1 and next(iter(settlers)).startswith("settler-"), settlers
    assert gateway.stop() == 0, gateway.log()  # in-flight work finished, the outbox flushed
    assert redis_client().xlen(STREAM) == 0
    assert reservations_sweep(now=timezone.now() + timedelta(days=1)) == 0  # nothing left held
    assert_books(organizations, outcomes)
    assert_abandoned_while_waiting_bills_the_prompt(gateway, outcomes)
