"""Issue 21: a settlement batch costs a fixed number of statements whatever its size (rows go in
by COPY, holds are marked in one statement, rollups upserted once per table), and settling a
mixed batch at once leaves the books exactly as settling its drafts one by one does."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import Sum

from accounts.models import ApiKey
from billing import rollups
from billing.drafts import UsageDraft
from billing.models import (
    CreditAccount,
    KeySpendWindow,
    LedgerEntry,
    Reservation,
    UsageRecord,
    UsageStep,
)
from billing.services import ReservationRequest, credits_reserve
from billing.settle_sql import rows_copy
from billing.settlement import _USAGE_COLUMNS, _usage_row, usage_settle_batch
from tests.conftest import require_postgres
from tests.factories import funded_organization_make, key_make


def _held(organization: Any, key: ApiKey | None, cost: str, hold: str = "0.1", **extra: Any):
    generation_id = f"gen-{uuid.uuid4().hex}"
    credits_reserve(ReservationRequest(
        organization_id=organization.pk, generation_id=generation_id, amount=Decimal(hold),
        key_id=key.pk if key else None, key_limit=key.limit if key else None,
        key_limit_reset=key.limit_reset if key else None,
    ))  # fmt: skip
    fields = {"model": "demo/small", "provider": "demo", "prompt_tokens": 7,
              "completion_tokens": 3} | extra  # fmt: skip
    return UsageDraft(generation_id=generation_id, organization_id=organization.pk,
                      key_id=key.pk if key else None, status="succeeded", cost=Decimal(cost),
                      **fields)  # fmt: skip


class _Statements:
    """Statements the settlement sends: Django's cursors (an ``executemany`` counts each of its
    rows) and psycopg's ``COPY`` (one statement)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        copy = psycopg.Cursor.copy

        def copy_counted(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return copy(cursor, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "copy", copy_counted)

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += len(params) if many else 1
        return execute(sql, params, many, context)


@pytest.mark.django_db
def test_a_batch_costs_the_same_statements_whatever_its_size(monkeypatch):
    """Before: one INSERT per usage record and per ledger entry (2 per draft) — what made a
    batch cost PostgreSQL a parse, a plan and a partition lookup per row."""
    require_postgres()
    organization = funded_organization_make("100")
    key_make(organization)
    key = ApiKey.objects.get(organization=organization)
    counts = []
    for size in (3, 30):
        drafts = [_held(organization, key, "0.01") for _ in range(size)]
        counter = _Statements(monkeypatch)
        with connection.execute_wrapper(counter):
            assert len(usage_settle_batch(drafts)) == size
        counts.append(counter.count)
    assert counts[0] == counts[1], f"statements for 3 and 30 drafts: {counts}"
    assert LedgerEntry.objects.filter(organization=organization, kind="usage").count() == 33


def _books(organization: Any) -> dict[str, Any]:
    """Everything settlement wrote for the organization, without ids, times or generation ids."""
    account = CreditAccount.objects.get(organization=organization)
    records = UsageRecord.objects.filter(organization=organization).order_by("cost", "model")
    org = {"organization_id": organization.pk}
    return {
        "account": (account.balance, account.reserved, account.total_used),
        # sorted as tuples: order_by("cost", "model") leaves ties (a free draft with a key and
        # one without) in whatever order PostgreSQL returns them
        "records": sorted((r.model, r.cost, r.flags, r.key_id is None) for r in records),
        "ledger": sorted((e.amount, e.balance_after) for e in
                         LedgerEntry.objects.filter(organization=organization, kind="usage")),
        "holds": sorted(Reservation.objects.filter(**org).values_list("amount", "state")),
        "steps": sorted(UsageStep.objects.filter(generation_id__in=[r.generation_id for r in records])
                        .values_list("step", "cost")),
        "windows": sorted(KeySpendWindow.objects.filter(key__organization=organization)
                          .values_list("spent", "reserved")),
        "rollups": [sorted(table.model.objects.filter(**org).values_list(
                        *(d for d in table.dimensions if d not in ("organization_id", "key_id")),
                        "requests", "prompt_tokens", "completion_tokens", "cost"))
                    for table in (rollups.PER_KEY, rollups.ALL_KEYS, rollups.KEY_DAYS)],
    }  # fmt: skip


def _mixed_batch(organization: Any) -> list[UsageDraft]:
    """Paid and free drafts, two keys (one with a limit: its spend window), several models, a
    pipeline's steps, and, last, more than the balance has left (a shortfall)."""
    plain = ApiKey.objects.get(organization=organization, name="plain")
    limited = ApiKey.objects.get(organization=organization, name="limited")
    steps = [{"step": 1, "model": "demo/small", "provider": "demo", "status": "succeeded",
              "gate": "failed", "prompt_tokens": 5, "completion_tokens": 1, "cost": "0.2",
              "latency_ms": 3},
             {"step": 2, "model": "demo/large", "provider": "demo", "status": "succeeded",
              "gate": "none", "prompt_tokens": 5, "completion_tokens": 9, "cost": "0.3",
              "latency_ms": 5}]  # fmt: skip
    drafts = [_held(organization, plain, "0.1", model=f"demo/m{i % 3}") for i in range(6)]
    drafts += [_held(organization, limited, "0.05"), _held(organization, None, "0")]
    drafts += [_held(organization, plain, "0"), _held(organization, limited, "0.25")]
    drafts.append(_held(organization, None, "0.5", steps=steps, model="pipeline/p"))
    drafts.append(_held(organization, plain, "0.9", flags="over_hold"))  # beyond its hold
    return drafts


def _organization_with_keys() -> Any:
    # The last draft (0.9) meets a balance of 0.3: a shortfall.
    organization = funded_organization_make("1.7")
    key_make(organization, name="plain")
    key_make(organization, name="limited", limit=Decimal("5"), limit_reset="daily")
    return organization


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("upsert_rows", [200, 2])
def test_a_mixed_batch_settles_as_its_drafts_one_by_one(monkeypatch, upsert_rows):
    """Rollups (upserted a statement per table, ``upsert_rows`` rows at most), holds (marked in
    one statement), windows, records, ledger, shortfall: the same books either way."""
    monkeypatch.setattr(rollups, "_UPSERT_ROWS", upsert_rows)
    at_once, one_by_one = _organization_with_keys(), _organization_with_keys()
    batch = _mixed_batch(at_once)
    assert sorted(usage_settle_batch(batch)) == sorted(d.generation_id for d in batch)
    assert usage_settle_batch(batch) == []  # settled twice, charged once
    for draft in _mixed_batch(one_by_one):
        usage_settle_batch([draft])
    books = _books(at_once)
    assert books == _books(one_by_one)
    assert books["account"][0] == 0 and books["account"][1] == 0  # spent to zero, nothing held
    assert any("shortfall" in flags for _, _, flags, _ in books["records"])
    assert {state for _, state in books["holds"]} == {"settled", "released"}
    total = LedgerEntry.objects.filter(organization=at_once).aggregate(s=Sum("amount"))["s"]
    assert total == 0 == books["account"][0]


@pytest.mark.django_db
def test_copy_refusals_are_djangos_errors():
    """The outbox tells a draft the database refuses (dead-lettered) from a database that is
    down by Django's exception classes: COPY, which Django's cursor does not wrap, raises them."""
    require_postgres()
    organization = funded_organization_make("1")
    draft = _held(organization, None, "0.01")
    usage_settle_batch([draft])
    with pytest.raises(IntegrityError), transaction.atomic():  # its id is claimed already
        rows_copy(UsageRecord._meta.db_table, _USAGE_COLUMNS, [_usage_row(draft)])
    too_long = _held(organization, None, "0.01", model="m" * 201)
    with pytest.raises(DataError):
        usage_settle_batch([too_long])
