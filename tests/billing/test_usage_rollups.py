"""The usage API, chart, overview and key spend read daily rollups that settlement keeps in its
own transaction: their numbers equal those computed from the usage records, for every grouping,
for ranges that cut days in half, after a shortfall and after concurrent settlers."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count, F, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from accounts.models import ApiKey, KeyScope
from billing.models import UsageRecord, UsageRollup, UsageRollupAllKeys, UsageRollupKeyDay
from billing.selectors import UsageFilter, key_usage
from billing.services import ledger_post
from billing.settlement import UsageDraft, usage_settle_batch
from billing.usage_groups import UsageGroups
from routerhub.money import money, money_str
from tests.conftest import require_postgres
from tests.factories import key_client, key_make, organization_make

GROUPS = ("day", "model", "key", "router", "provider")
MODELS = [("demo/small", "alpha"), ("demo/large", "beta"), ("demo/tiny", "alpha")]


def _raw_aggregate(
    organization_id: int, filters: UsageFilter, group_by: str
) -> list[dict[str, Any]]:
    """The usage API's answer computed from the records alone (what it did before rollups)."""
    rows = UsageRecord.objects.filter(organization_id=organization_id)
    if filters.start is not None:
        rows = rows.filter(created_at__gte=filters.start)
    if filters.end is not None:
        rows = rows.filter(created_at__lt=filters.end)
    if filters.model:
        rows = rows.filter(model=filters.model)
    if filters.status:
        rows = rows.filter(status=filters.status)
    if filters.key_id is not None:
        rows = rows.filter(key_id=filters.key_id)
    group = {
        "day": TruncDate("created_at"),
        "key": Coalesce(F("key__name"), Value("(deleted key)")),
    }
    rows = rows.annotate(group=group.get(group_by, F(group_by)))
    totals = rows.values("group").annotate(requests=Count("id"), prompt_tokens=Sum("prompt_tokens"),
                                           completion_tokens=Sum("completion_tokens"),
                                           cost=Sum("cost"),
                                           cache_write_tokens=Sum("cache_write_tokens"))  # fmt: skip
    return sorted((dict(row) for row in totals), key=lambda row: row["group"])


def _drafts(
    organization_id: int, keys: list[int | None], count: int, base: datetime
) -> list[UsageDraft]:
    drafts = []
    for i in range(count):
        model, provider = MODELS[i % len(MODELS)]
        drafts.append(UsageDraft(
            generation_id=f"gen-{uuid.uuid4().hex}", organization_id=organization_id,
            key_id=keys[i % len(keys)], status=("succeeded", "failed", "aborted")[i % 7 % 3],
            cost=Decimal(i % 5) / 1000, model=model, provider=provider,
            router="router/x" if i % 4 == 0 else "", prompt_tokens=10 + i, completion_tokens=i % 13,
            cache_write_tokens=i % 3 * 4,
            created_at=base + timedelta(hours=5 * i + 0.25),
        ))  # fmt: skip
    return drafts


def _rollups_equal_records() -> None:
    """Every rollup row is the sum of exactly the records of its (organization, day, key, …)."""
    expected = {
        (r["organization_id"], r["day"], r["k"] or 0, r["model"], r["provider"], r["router"],
         r["status"]): (r["n"], r["p"], r["c"], r["cost"], r["w"])
        for r in UsageRecord.objects.annotate(day=TruncDate("created_at"), k=F("key_id"))
        .values("organization_id", "day", "k", "model", "provider", "router", "status")
        .annotate(n=Count("id"), p=Sum("prompt_tokens"), c=Sum("completion_tokens"), cost=Sum("cost"),
                  w=Sum("cache_write_tokens"))
    }  # fmt: skip
    actual = {
        (r.organization_id, r.day, r.key_id, r.model, r.provider, r.router, r.status):
        (r.requests, r.prompt_tokens, r.completion_tokens, r.cost, r.cache_write_tokens)
        for r in UsageRollup.objects.all()
    }  # fmt: skip
    assert actual == expected
    all_keys: dict[tuple[Any, ...], list[Any]] = {}
    for (organization, day, _, model, provider, router, status), totals in expected.items():
        row = all_keys.setdefault(
            (organization, day, model, provider, router, status), [0, 0, 0, 0, 0]
        )
        for i, value in enumerate(totals):
            row[i] += value
    assert {
        (r.organization_id, r.day, r.model, r.provider, r.router, r.status):
        [r.requests, r.prompt_tokens, r.completion_tokens, r.cost, r.cache_write_tokens]
        for r in UsageRollupAllKeys.objects.all()
    } == all_keys  # fmt: skip
    key_days: dict[tuple[Any, ...], list[Any]] = {}
    for (organization, day, key, *_), totals in expected.items():
        row = key_days.setdefault((organization, day, key), [0, 0, 0, 0, 0])
        for i, value in enumerate(totals):
            row[i] += value
    assert {
        (r.organization_id, r.day, r.key_id):
        [r.requests, r.prompt_tokens, r.completion_tokens, r.cost, r.cache_write_tokens]
        for r in UsageRollupKeyDay.objects.all()
    } == key_days  # fmt: skip


@pytest.fixture
def settled(tenants):  # type: ignore[no-untyped-def]
    organization = tenants.organization
    ledger_post(organization=organization, kind="promotion", amount=Decimal("100"),
                idempotency_key="grant")  # fmt: skip
    key_make(organization, name="app")
    key_make(organization, name="batch")
    keys: list[int | None] = [
        *ApiKey.objects.filter(organization=organization).values_list("pk", flat=True),
        None,
    ]
    base = (timezone.now() - timedelta(days=12)).replace(hour=0, minute=0, second=0, microsecond=0)
    drafts = _drafts(organization.pk, keys, 60, base)
    for i in range(0, len(drafts), 7):
        usage_settle_batch(drafts[i : i + 7])
    return organization


RANGES = {
    "everything": {},
    "from a midday": {"start": timedelta(days=-9, hours=-7)},
    "between two middays": {
        "start": timedelta(days=-9, hours=-7),
        "end": timedelta(days=-3, hours=-2),
    },
    "inside one day": {
        "start": timedelta(days=-5, hours=-20),
        "end": timedelta(days=-5, hours=-15),
    },
    "up to a midnight": {"end": timedelta(days=-4)},
}


@pytest.mark.django_db
@pytest.mark.parametrize("window", list(RANGES))
@pytest.mark.parametrize("group_by", GROUPS)
def test_usage_from_rollups_equals_usage_from_records(settled, window, group_by):  # type: ignore[no-untyped-def]
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    bounds = {name: midnight + offset for name, offset in RANGES[window].items()}
    key = ApiKey.objects.get(organization=settled, name="app").pk
    for extra in ({}, {"model": "demo/large"}, {"status": "failed"}, {"key_id": key}):
        filters = UsageFilter(**bounds, **extra)
        expected = _raw_aggregate(settled.pk, filters, group_by)
        assert expected or window == "inside one day"
        groups = UsageGroups(organization_id=settled.pk, filters=filters, group_by=group_by)
        paged = [row for start in range(0, 40, 2) for row in groups[start : start + 2]]
        assert groups.count() == len(expected)
        assert paged == [_normalised(row) for row in expected]  # the API's pages, in order


def _normalised(row: dict[str, Any]) -> dict[str, Any]:
    measures = ("prompt_tokens", "completion_tokens", "cache_write_tokens")
    return (
        {"group": row["group"], "requests": row["requests"]}
        | {name: row[name] or 0 for name in measures}
        | {"cost": money(row["cost"] or 0)}
    )


@pytest.mark.django_db
def test_usage_api_answers_from_rollups_not_records(settled):  # type: ignore[no-untyped-def]
    manage = key_client(key_make(settled, scope=KeyScope.MANAGE))
    start = (timezone.now() - timedelta(days=30)).date().isoformat()
    expected = _raw_aggregate(
        settled.pk, UsageFilter(start=datetime.fromisoformat(start).replace(tzinfo=UTC)), "model"
    )

    UsageRecord.objects.filter(organization=settled).update(cost=Decimal(999))  # records only

    body = manage.get("/api/v1/usage", {"start": start, "group_by": "model"}).json()
    assert [row["cost"] for row in body["results"]] == [f"{row['cost']:.8f}" for row in expected]


@pytest.mark.django_db
def test_key_spend_per_window_comes_from_rollups(settled):  # type: ignore[no-untyped-def]
    key = ApiKey.objects.get(organization=settled, name="app")
    spend = key_usage(key=key)
    total = UsageRecord.objects.filter(key=key).aggregate(s=Sum("cost"))["s"]
    today = UsageRecord.objects.filter(key=key, created_at__gte=timezone.now().replace(
        hour=0, minute=0, second=0, microsecond=0)).aggregate(s=Sum("cost"))["s"] or 0  # fmt: skip
    assert spend.usage == total and spend.usage_daily == today
    _rollups_equal_records()


@pytest.mark.django_db
def test_a_shortfall_lowers_the_rollup_with_the_record(tenants):  # type: ignore[no-untyped-def]
    organization = tenants.organization
    ledger_post(organization=organization, kind="promotion", amount=Decimal("0.5"),
                idempotency_key="small")  # fmt: skip
    drafts = _drafts(organization.pk, [None], 3, timezone.now() - timedelta(hours=1))
    for draft in drafts:
        draft.status, draft.cost = "succeeded", Decimal("0.3")
    usage_settle_batch(drafts)
    assert UsageRecord.objects.aggregate(s=Sum("cost"))["s"] == Decimal("0.5")
    assert UsageRollup.objects.aggregate(s=Sum("cost"))["s"] == Decimal("0.5")
    _rollups_equal_records()


@pytest.mark.django_db(transaction=True)
def test_concurrent_settlers_keep_rollups_equal_to_records() -> None:
    require_postgres()
    organizations = [organization_make() for _ in range(2)]
    for organization in organizations:
        ledger_post(organization=organization, kind="promotion", amount=Decimal("1000"),
                    idempotency_key=f"grant:{organization.pk}")  # fmt: skip
    now = timezone.now() - timedelta(hours=30)
    # Every thread settles into the same rollup rows (same days, keys, models), interleaved.
    batches = [_drafts(organizations[i % 2].pk, [None], 40, now) for i in range(6)]
    errors: list[BaseException] = []

    def settle(drafts: list[UsageDraft]) -> None:
        try:
            for i in range(0, len(drafts), 5):
                usage_settle_batch(drafts[i : i + 5])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=settle, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert UsageRecord.objects.count() == 240
    _rollups_equal_records()
    for organization in organizations:
        for group_by in GROUPS:
            filters = UsageFilter(start=now - timedelta(hours=7))
            groups = UsageGroups(organization_id=organization.pk, filters=filters,
                                 group_by=group_by)[0:1000]  # fmt: skip
            expected = _raw_aggregate(organization.pk, filters, group_by)
            assert groups == [_normalised(row) for row in expected]


@pytest.mark.django_db
def test_the_migration_fills_the_rollups_from_existing_records(settled):  # type: ignore[no-untyped-def]
    import importlib

    migration = importlib.import_module("billing.migrations.0008_usage_rollups")
    for model in (UsageRollup, UsageRollupAllKeys, UsageRollupKeyDay):
        model.objects.all().delete()  # as before the migration: records without rollups
    UsageRecord.objects.update(cache_write_tokens=0)  # nor that column (billing 0014)

    migration.rollups_backfill(None, type("SchemaEditor", (), {"connection": connection})())

    _rollups_equal_records()
    assert UsageRollup.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("group_by", GROUPS)
def test_the_dashboards_usage_groups_and_totals_are_the_apis(settled, tenants, group_by):  # type: ignore[no-untyped-def]
    """The usage page and ``GET /api/v1/usage`` read one mechanism: the same groups, measures
    and order for the same window and filters, and the page's totals are the groups' sums."""
    from tests.factories import dashboard_client

    manage = key_client(key_make(settled, scope=KeyScope.MANAGE))
    dashboard = dashboard_client(tenants.owner, settled)
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    windows = [{}, {"start": (midnight - timedelta(days=9, hours=7)).isoformat(),
                    "end": (midnight - timedelta(days=3, hours=2)).isoformat()}]  # fmt: skip
    for window in windows:
        for extra in ({}, {"status": "failed"}):
            params = {"group_by": group_by, **window, **extra}
            api = manage.get("/api/v1/usage", params).json()["results"]
            page = dashboard.get("/dashboard/usage/", params).context
            shown = [row | {"group": str(row["group"]) if row["group"] is not None else None,
                            "cost": money_str(row["cost"])} for row in page["groups"]]  # fmt: skip
            totals = page["totals"]

            assert api and shown == api, params
            assert totals["requests"] == sum(row["requests"] for row in api)
            assert money_str(totals["cost"]) == money_str(sum(Decimal(r["cost"]) for r in api))
            assert totals.get("prompt_tokens", 0) == sum(r["prompt_tokens"] for r in api)
