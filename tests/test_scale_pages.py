"""What the bounds of ``tests/test_scale_queries.py`` leave reachable: the rows past a page, the
organizations past the switcher, the datasets past the train form's menu, the usage groups past
an API page."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from accounts.models import KeyScope, Membership, Organization, Role
from tests.factories import dashboard_client, key_client, key_make, organization_make, user_make
from tests.rows_answered import RowsAnswered
from training.models import Dataset, DatasetStatus
from training.views import DATASET_CHOICES, TrainForm

pytestmark = pytest.mark.django_db


def test_the_switcher_keeps_the_current_organization_and_the_organization_page_pages_the_rest():
    user = user_make()
    current = organization_make(user, "Zulu last by name")
    others = Organization.objects.bulk_create(
        Organization(slug=f"many-{i}", name=f"Alpha {i:02d}") for i in range(60)
    )
    Membership.objects.bulk_create(
        Membership(user=user, organization=o, role=Role.MEMBER) for o in others
    )
    client = dashboard_client(user, current)

    page = client.get("/dashboard/").content.decode()
    switcher = page[page.index('id="org-switch"') : page.index("</select>")]
    listed = [client.get("/dashboard/organization/", {"organizations_page": n}) for n in (1, 2)]

    assert switcher.count("<option") == 20
    assert f'value="{current.pk}" selected' in switcher
    assert 'href="/dashboard/organization/#your-organizations"' in page
    names = set()
    for response in listed:
        names |= set(re.findall(r"Alpha \d\d", response.content.decode()))
    assert names == {f"Alpha {i:02d}" for i in range(60)}


def test_a_dataset_older_than_the_menu_still_trains():
    organization = organization_make()
    datasets = Dataset.objects.bulk_create(
        Dataset(organization=organization, name=f"d{i}", file="x.csv", status=DatasetStatus.READY)
        for i in range(DATASET_CHOICES + 5)
    )
    oldest = min(datasets, key=lambda d: (d.created_at, d.pk))

    form = TrainForm(organization, data={"dataset": oldest.pk, "folds": 5})

    assert str(form["dataset"]).count("<option") == DATASET_CHOICES + 1  # and the empty choice
    assert form.is_valid(), form.errors
    assert form.cleaned_data["dataset"] == oldest


def test_the_keys_page_links_to_the_keys_past_its_first_page(tenants):
    for i in range(55):
        key_make(tenants.organization, name=f"paged-key-{i:02d}")
    client = dashboard_client(tenants.owner, tenants.organization)

    first = client.get("/dashboard/keys/").content.decode()
    second = client.get("/dashboard/keys/", {"page": "2"}).content.decode()
    bad = client.get("/dashboard/keys/", {"page": "²"})

    shown = set(re.findall(r"paged-key-\d\d", first)) | set(re.findall(r"paged-key-\d\d", second))
    assert len(shown) == 55
    assert 'href="?page=2"' in first and 'href="?page=1"' in second
    assert bad.status_code == 200  # not a page number: the first page


def test_the_keys_page_lists_active_keys_before_fifty_revoked_ones(tenants):
    from django.utils import timezone

    from accounts.models import ApiKey

    for i in range(52):
        key_make(tenants.organization, name=f"revoked-key-{i:02d}")
    ApiKey.objects.filter(organization=tenants.organization).update(revoked_at=timezone.now())
    key_make(tenants.organization, name="the-active-key")
    client = dashboard_client(tenants.owner, tenants.organization)

    first = client.get("/dashboard/keys/").content.decode()

    # PostgreSQL sorts NULL revoked_at last ascending: page 1 was all revoked keys.
    assert "the-active-key" in first
    assert first.index("the-active-key") < first.index("revoked-key-")


def test_usage_groups_past_one_page_are_behind_next(tenants):
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from accounts.models import ApiKey
    from billing.models import UsageRollup, UsageRollupKeyDay

    for i in range(7):
        key_make(tenants.organization, name=f"k{i}")
    today = timezone.now().date()
    for model in (UsageRollup, UsageRollupKeyDay):
        model.objects.bulk_create(
            model(organization=tenants.organization, day=today - timedelta(days=1), key_id=k.pk,
                  requests=1, cost=Decimal("0.01"), **({"model": "m", "status": "succeeded"}
                                                       if model is UsageRollup else {}))
            for k in ApiKey.objects.filter(organization=tenants.organization)
        )  # fmt: skip
    manage = key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))

    first = manage.get("/api/v1/usage", {"group_by": "key", "limit": 5}).json()
    second = manage.get(first["next"]).json()

    assert first["group_by"] == second["group_by"] == "key"
    assert len(first["results"]) == 5 and second["next"] is None
    groups = [row["group"] for row in first["results"] + second["results"]]
    assert len(groups) == len(set(groups)) == first["count"] >= 7


def _usage_page_cost(organization, models: int):  # type: ignore[no-untyped-def]
    """Statements run and rows they answered for page 2 (3 groups) of ``group_by=model``, with
    ``models`` groups over 20 days in the organization's rollups."""
    from datetime import timedelta
    from decimal import Decimal

    from django.db import connection
    from django.utils import timezone

    from billing.models import UsageRollupAllKeys

    today = timezone.now().date()
    UsageRollupAllKeys.objects.bulk_create(
        UsageRollupAllKeys(organization=organization, day=today - timedelta(days=1 + d),
                           model=f"m/{m:03d}", provider="p", router="", status="succeeded",
                           requests=1, cost=Decimal("0.01"))
        for m in range(models) for d in range(20)
    )  # fmt: skip
    manage = key_client(key_make(organization, scope=KeyScope.MANAGE))
    manage.get("/api/v1/key")  # the key's cache is warm: the page's statements alone remain
    answered = RowsAnswered()
    with connection.execute_wrapper(answered):
        body = manage.get("/api/v1/usage", {"group_by": "model", "limit": 3, "page": 2}).json()
    return len(answered.rows), sum(answered.rows), body


def test_a_usage_page_reads_its_own_groups_whatever_the_range_holds():
    """The database adds up, orders and cuts the groups: a page fetches the same rows whether
    the range holds 6 groups or 120 (before, every group of the range, each page)."""
    few = _usage_page_cost(organization_make(name="Few"), 6)
    many = _usage_page_cost(organization_make(name="Many"), 120)

    assert few[:2] == many[:2]
    assert few[1] <= 3 + 2  # the page, the count, and the tenant read
    for body, total in ((few[2], 6), (many[2], 120)):
        assert body["count"] == total
        assert [row["group"] for row in body["results"]] == ["m/003", "m/004", "m/005"]
        assert body["results"][0] == {"group": "m/003", "requests": 20, "prompt_tokens": 0,
                                      "completion_tokens": 0, "cache_write_tokens": 0,
                                      "cost": "0.20000000"}  # fmt: skip


def _totals_cost(organization, days: int):  # type: ignore[no-untyped-def]
    """Rows answered by a key's spend (``key_usage``: overall and per window) and the
    organization's summary (``usage_summary``), with ``days`` daily rollup rows of the key, and
    what they answered."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from accounts.models import ApiKey
    from billing.models import UsageRollupKeyDay
    from billing.selectors import UsageFilter, key_usage, usage_summary

    key_make(organization, name="spender")
    key = ApiKey.objects.get(organization=organization, name="spender")
    today = timezone.now().date()
    UsageRollupKeyDay.objects.bulk_create(
        UsageRollupKeyDay(organization=organization, day=today - timedelta(days=d), key_id=key.pk,
                          requests=2, prompt_tokens=3, cost=Decimal("0.01"))
        for d in range(days)
    )  # fmt: skip
    answered = RowsAnswered()
    with connection.execute_wrapper(answered):
        spent = key_usage(key=key)
        summary = usage_summary(organization_id=organization.pk, filters=UsageFilter())
    return len(answered.rows), sum(answered.rows), spent, summary


def test_a_keys_spend_and_the_summary_are_added_up_by_the_database():
    """Without a dimension, each part is one aggregate row, however many rollup rows it adds up
    (before, one row per rollup row, added up in Python)."""
    few = _totals_cost(organization_make(name="Few days"), 2)
    many = _totals_cost(organization_make(name="Many days"), 60)

    assert few[:2] == many[:2]
    for (_, _, spent, summary), days in ((few, 2), (many, 60)):
        assert spent.usage == Decimal("0.01") * days
        assert spent.usage_daily == Decimal("0.01")  # today's row
        assert summary == {"requests": 2 * days, "prompt_tokens": 3 * days,
                           "completion_tokens": 0, "cache_write_tokens": 0,
                           "cost": Decimal("0.01") * days}  # fmt: skip
    empty = _totals_cost(organization_make(name="No days"), 0)
    assert empty[2].usage == 0 and empty[3] == {"requests": 0, "cost": 0}


def _dashboard_usage_cost(organization, models: int):  # type: ignore[no-untyped-def]
    """Statements run and rows they answered for the dashboard's usage page with ``models``
    models over 20 days in the organization's rollups and a request of each today, and the
    page."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from billing.models import UsageRecord, UsageRollupAllKeys

    today, now = timezone.now().date(), timezone.now()
    UsageRollupAllKeys.objects.bulk_create(
        UsageRollupAllKeys(organization=organization, day=today - timedelta(days=1 + d),
                           model=f"m/{m:03d}", provider="p", router="", status="succeeded",
                           requests=1, cost=Decimal("0.01") * (m + 1))
        for m in range(models) for d in range(20)
    )  # fmt: skip
    UsageRecord.objects.bulk_create(
        UsageRecord(organization=organization, generation_id=f"gen-{organization.pk}-{m}",
                    model=f"m/{m:03d}", provider="p", status="succeeded", cost=Decimal("0.01"),
                    created_at=now - timedelta(seconds=m))
        for m in range(models)
    )  # fmt: skip
    owner = organization.memberships.get().user
    client = dashboard_client(owner, organization)
    client.get("/dashboard/usage/")  # the session's and the organization's reads are warm
    answered = RowsAnswered()
    with connection.execute_wrapper(answered):
        page = client.get("/dashboard/usage/")
    return len(answered.rows), sum(answered.rows), page


def test_the_dashboard_usage_page_reads_a_page_of_groups_whatever_the_range_holds():
    """The usage page's groups, model menu and chart are added up, ordered and cut by the
    database (``billing.usage_groups``): the same statements answer the same rows with 60 models
    as with 240 (before, every model of the range, and every day of each, for the table, the
    menu and the chart, added up in Python)."""
    few = _dashboard_usage_cost(organization_make(user_make(), name="Few models"), 60)
    many = _dashboard_usage_cost(organization_make(user_make(), name="Many models"), 240)

    assert few[:2] == many[:2]
    for _, _, page in (few, many):
        groups = page.context["groups"]
        assert [row["group"] for row in groups] == [f"m/{m:03d}" for m in range(50)]
        assert len(page.context["models"]) == 50
        html = page.content.decode()
        assert re.search(r'href="\?end=[^"&]+&amp;groups_page=2"', html)  # pinned: as the API
        assert html.count("<rect") <= 30 * 8 + 8  # 7 models and "other" a day, and the legend
    assert many[2].context["groups"].count == 240
