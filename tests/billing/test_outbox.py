"""The usage outbox: drafts are settled in batches by a background settler, and a draft left
behind by a dead process is claimed and settled exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal

import orjson
import pytest
from asgiref.sync import sync_to_async

from billing.models import CreditAccount, LedgerEntry, UsageRecord
from billing.outbox import GROUP, STREAM, usage_outbox_drain, usage_outbox_flush, usage_record_async
from billing.services import ReservationRequest, UsageDraft, credits_reserve, ledger_post
from tests.conftest import require_redis
from tests.factories import organization_make


def _draft(organization, generation_id: str, cost: str = "0.25") -> UsageDraft:
    return UsageDraft(
        generation_id=generation_id,
        organization_id=organization.pk,
        key_id=None,
        status="succeeded",
        cost=Decimal(cost),
        model="demo/small",
    )


@pytest.fixture
def redis_client(settings):
    require_redis()
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(STREAM)
    yield client
    client.delete(STREAM)


@pytest.fixture
def funded(transactional_db):
    organization = organization_make()
    ledger_post(
        organization=organization, kind="promotion", amount=Decimal("10"), idempotency_key="g"
    )
    return organization


def test_drafts_are_settled_in_the_background_and_leave_the_stream(redis_client, funded):
    ids = [f"gen-bg-{i}" for i in range(20)]
    for generation_id in ids:
        credits_reserve(
            ReservationRequest(
                organization_id=funded.pk, generation_id=generation_id, amount=Decimal("0.3")
            )
        )

    async def serve_and_wait() -> None:
        for generation_id in ids:
            await usage_record_async(_draft(funded, generation_id))
        settled = sync_to_async(UsageRecord.objects.filter(generation_id__in=ids).count)
        deadline = time.monotonic() + 10
        while await settled() < len(ids):
            assert time.monotonic() < deadline, "drafts were not settled in time"
            await asyncio.sleep(0.02)
        await usage_outbox_flush()

    asyncio.run(serve_and_wait())

    account = CreditAccount.objects.get(organization=funded)
    assert account.balance == Decimal("5") and account.reserved == 0
    assert LedgerEntry.objects.filter(kind="usage", organization=funded).count() == 20
    assert redis_client.xlen(STREAM) == 0


def test_a_draft_left_by_a_dead_process_is_claimed_and_settled_once(redis_client, funded):
    credits_reserve(
        ReservationRequest(
            organization_id=funded.pk, generation_id="gen-orphan", amount=Decimal("0.5")
        )
    )
    with contextlib.suppress(Exception):  # the group may exist already
        redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    redis_client.xadd(STREAM, {"d": orjson.dumps(_draft(funded, "gen-orphan").to_json())})
    # A gateway process read it, then died before settling and acknowledging it.
    assert redis_client.xreadgroup(GROUP, "dead-process", {STREAM: ">"}, count=10)

    first = usage_outbox_drain(idle_ms=0)
    again = usage_outbox_drain(idle_ms=0)

    assert (first, again) == (1, 0)
    assert UsageRecord.objects.filter(generation_id="gen-orphan").count() == 1
    assert LedgerEntry.objects.filter(idempotency_key="usage:gen-orphan").count() == 1
    assert CreditAccount.objects.get(organization=funded).reserved == 0
    assert redis_client.xlen(STREAM) == 0
