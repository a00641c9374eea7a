"""The usage outbox: a draft survives a worker that dies before settling, and is charged once."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import orjson
import pytest

from billing.models import LedgerEntry, UsageRecord
from billing.outbox import OUTBOX_KEY, usage_outbox_drain, usage_record_async
from billing.services import ReservationRequest, UsageDraft, credits_reserve, ledger_post
from tests.conftest import require_redis
from tests.factories import organization_make


def _draft(organization, generation_id: str) -> UsageDraft:
    return UsageDraft(
        generation_id=generation_id,
        organization_id=organization.pk,
        key_id=None,
        status="succeeded",
        cost=Decimal("0.25"),
        model="demo/small",
    )


@pytest.fixture
def redis_client(settings):
    require_redis()
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(OUTBOX_KEY)
    yield client
    client.delete(OUTBOX_KEY)


@pytest.mark.django_db(transaction=True)
def test_usage_is_settled_and_removed_from_the_outbox(redis_client):
    organization = organization_make()
    ledger_post(
        organization=organization, kind="promotion", amount=Decimal("1"), idempotency_key="g"
    )
    credits_reserve(
        ReservationRequest(
            organization_id=organization.pk, generation_id="gen-ok", amount=Decimal("0.5")
        )
    )

    asyncio.run(usage_record_async(_draft(organization, "gen-ok")))

    assert UsageRecord.objects.filter(generation_id="gen-ok").count() == 1
    assert redis_client.llen(OUTBOX_KEY) == 0


@pytest.mark.django_db(transaction=True)
def test_a_draft_orphaned_by_a_dead_worker_is_settled_once_by_the_drainer(redis_client):
    organization = organization_make()
    ledger_post(
        organization=organization, kind="promotion", amount=Decimal("1"), idempotency_key="g"
    )
    credits_reserve(
        ReservationRequest(
            organization_id=organization.pk, generation_id="gen-orphan", amount=Decimal("0.5")
        )
    )
    # The worker pushed the draft, then died before settling it.
    orphan = {"at": time.time() - 60, "draft": _draft(organization, "gen-orphan").to_json()}
    redis_client.rpush(OUTBOX_KEY, orjson.dumps(orphan))
    fresh = {"at": time.time(), "draft": _draft(organization, "gen-fresh").to_json()}
    redis_client.rpush(OUTBOX_KEY, orjson.dumps(fresh))

    first = usage_outbox_drain()
    again = usage_outbox_drain()

    assert (first, again) == (1, 0)
    assert UsageRecord.objects.filter(generation_id="gen-orphan").count() == 1
    assert LedgerEntry.objects.filter(idempotency_key="usage:gen-orphan").count() == 1
    assert not UsageRecord.objects.filter(generation_id="gen-fresh").exists()  # still in grace
    assert redis_client.llen(OUTBOX_KEY) == 1
