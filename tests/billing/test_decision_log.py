"""A routed request's decision log travels in its usage draft through the Redis outbox and is
written by settlement beside its usage record: no database write of its own on the hot path."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import orjson
from asgiref.sync import sync_to_async

from billing.drafts import UsageDraft, draft_decode, draft_encode
from billing.models import UsageDecision
from billing.outbox import usage_outbox_flush, usage_record_async
from tests.routing.servers import SETTLE_TIMEOUT

DECISION = {
    "router_id": 7,
    "served_version": 3,
    "served_model": "test/gpt",
    "greedy_model": "test/claude",
    "propensity": 0.05,
    "shadow_version": 4,
    "shadow_model": "test/gpt",
    "predicted": {"test/gpt": [0.62, 0.0001], "test/claude": [0.8, 0.002]},
    "task_hint": "mmlu/high_school_mathematics",
}


def _draft(organization_id: int, generation_id: str, decision: dict | None) -> UsageDraft:
    return UsageDraft(
        generation_id=generation_id,
        organization_id=organization_id,
        key_id=None,
        status="succeeded",
        cost=Decimal("0.01"),
        model="test/gpt",
        decision=decision,
    )


def test_a_draft_without_a_decision_encodes_as_before() -> None:
    payload = orjson.loads(draft_encode(_draft(1, "gen-plain", None)))

    assert "decision" not in payload
    assert draft_decode(draft_encode(_draft(1, "gen-d", DECISION))).decision == DECISION


def test_the_decision_is_settled_with_its_usage_through_the_outbox(redis_client, funded) -> None:
    drafts = [_draft(funded.pk, "gen-logged", DECISION), _draft(funded.pk, "gen-unlogged", None)]

    async def serve_and_wait() -> None:
        for draft in drafts:
            await usage_record_async(draft)
        logged = sync_to_async(UsageDecision.objects.filter(generation_id="gen-logged").first)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while await logged() is None:
            assert time.monotonic() < deadline, "the decision was not settled in time"
            await asyncio.sleep(0.02)
        await usage_outbox_flush()

    asyncio.run(serve_and_wait())

    row = UsageDecision.objects.get()
    assert (row.router_id, row.served_version, row.served_model) == (7, 3, "test/gpt")
    assert (row.greedy_model, row.propensity) == ("test/claude", 0.05)
    assert (row.shadow_version, row.shadow_model) == (4, "test/gpt")
    assert orjson.loads(row.predicted) == DECISION["predicted"]
    assert row.task_hint == "mmlu/high_school_mathematics"
