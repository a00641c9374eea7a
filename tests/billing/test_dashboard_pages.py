"""Credits and Usage dashboard pages: content, chart, filters and role rules."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from html import unescape

import pytest
from django.utils import timezone

from billing.charts import spend_chart
from billing.drafts import UsageDraft
from billing.services import ledger_post
from billing.settlement import usage_settle, usage_settle_batch
from billing.views import GROUPS_PAGE, spend_chart_for
from tests.factories import dashboard_client

pytestmark = pytest.mark.django_db


def _usage(
    organization, model: str, cost: str, days_ago: int = 0, status: str = "succeeded"
) -> None:
    usage_settle(
        UsageDraft(
            generation_id=f"gen-{model}-{days_ago}-{status}",
            organization_id=organization.pk,
            key_id=None,
            status=status,
            cost=Decimal(cost),
            model=model,
            provider="demo",
            created_at=timezone.now() - timedelta(days=days_ago),
        )
    )


def test_credits_page_shows_balance_fee_and_transactions(tenants):
    ledger_post(
        organization=tenants.organization,
        kind="promotion",
        amount=Decimal("5"),
        idempotency_key="p",
        description="Welcome credits",
    )

    page = dashboard_client(tenants.owner, tenants.organization).get("/dashboard/credits/")

    html = page.content.decode()
    assert page.status_code == 200
    assert "$5.00" in html and "Welcome credits" in html
    assert "5.5%" in html  # the fee is shown before paying
    assert "$20.00 of credits costs $21.10" in html


def test_members_cannot_open_billing(tenants):
    page = dashboard_client(tenants.member, tenants.organization).get("/dashboard/credits/")

    assert page.status_code == 403


def test_usage_page_draws_the_chart_and_filters_the_log(tenants):
    ledger_post(
        organization=tenants.organization,
        kind="promotion",
        amount=Decimal("5"),
        idempotency_key="p",
    )
    _usage(tenants.organization, "demo/small", "0.001", days_ago=2)
    _usage(tenants.organization, "demo/large", "0.01")
    client = dashboard_client(tenants.member, tenants.organization)

    everything = client.get("/dashboard/usage/").content.decode()
    only_large = client.get("/dashboard/usage/", {"model": "demo/large"}).content.decode()

    assert "<svg" in everything and "demo/small" in everything and "demo/large" in everything
    assert "gen-demo/large-0-succeeded" in only_large
    assert "gen-demo/small-2-succeeded" not in only_large


def test_usage_page_reports_bad_filters_next_to_the_field(tenants):
    page = dashboard_client(tenants.member, tenants.organization).get(
        "/dashboard/usage/", {"start": "2026-03-01", "end": "2026-01-01"}
    )

    assert page.status_code == 200
    assert "must be after start" in page.content.decode()


def test_spend_chart_stacks_costs_per_day_and_labels_models():
    today = date(2026, 11, 28)
    rows = [
        {"day": today, "model": "a", "cost": Decimal("0.5")},
        {"day": today, "model": "b", "cost": Decimal("0.25")},
        {"day": today - timedelta(days=1), "model": "a", "cost": Decimal("1")},
        {"day": today - timedelta(days=40), "model": "c", "cost": Decimal("9")},  # outside window
    ]

    chart = spend_chart(rows, days=30, today=today)

    assert chart.total == Decimal("1.75")
    assert [label for label, _ in chart.legend] == ["a", "b"]
    assert chart.svg.count("<rect") == 3
    assert "$1" in chart.svg  # axis maximum is a round number at or above the peak day


def test_overview_shows_balance_month_spend_chart_and_quickstart(tenants):
    ledger_post(
        organization=tenants.organization,
        kind="promotion",
        amount=Decimal("5"),
        idempotency_key="p",
    )
    _usage(tenants.organization, "demo/small", "0.25")

    html = (
        dashboard_client(tenants.member, tenants.organization).get("/dashboard/").content.decode()
    )

    assert "$4.75" in html  # balance after the charge
    assert "$0.2500" in html  # spent this month
    assert "<svg" in html
    assert "/v1/chat/completions" in html and "base_url=" in html


def test_new_key_is_pasted_into_the_snippets_once(tenants):
    client = dashboard_client(tenants.admin, tenants.organization)

    created = client.post(
        "/dashboard/keys/", {"name": "laptop", "scope": "inference"}
    ).content.decode()
    later = client.get("/dashboard/keys/").content.decode()

    plaintext = created.split('<code id="new-key">')[1].split("</code>")[0]
    assert plaintext.startswith("rh-live-")
    assert created.count(plaintext) >= 4  # shown, and pasted into curl, Python and JS
    assert plaintext not in later


def test_small_amounts_are_labelled_without_scientific_notation():
    today = date(2026, 11, 28)

    chart = spend_chart(
        [{"day": today, "model": "a", "cost": Decimal("0.000004")}], days=7, today=today
    )

    assert "e-0" not in chart.svg and "$0.000005" in chart.svg


def test_credits_page_lists_receipts(tenants):
    from billing.models import Payment

    Payment.objects.create(organization=tenants.organization, kind="checkout", status="succeeded",
                           amount=Decimal("50"), fee=Decimal("2.75"), receipt_url="https://pay.example/r/1")  # fmt: skip

    html = (
        dashboard_client(tenants.owner, tenants.organization)
        .get("/dashboard/credits/")
        .content.decode()
    )

    receipts = html.split("<h2>Receipts</h2>")[1].split("<h2>Transactions</h2>")[0]
    assert "$50.00" in receipts and "$2.75" in receipts and "$52.75" in receipts
    assert "https://pay.example/r/1" in receipts


def test_the_charts_legend_ranks_models_over_the_days_it_draws(tenants):
    """The legend's seven models are the costliest of the 30 days drawn: a model used only on
    the day before them (inside "the last 30 days of hours", outside the chart) takes no place."""
    ledger_post(organization=tenants.organization, kind="promotion", amount=Decimal("2000"),
                idempotency_key="p")  # fmt: skip
    for index in range(8):  # m0 … m7, costs 10 … 3
        _usage(tenants.organization, f"m{index}", str(10 - index), days_ago=3)
    day_before = timezone.now().astimezone(UTC).date() - timedelta(days=30)
    usage_settle(
        UsageDraft(
            generation_id="gen-zz-old",
            organization_id=tenants.organization.pk,
            key_id=None,
            status="succeeded",
            cost=Decimal("1000"),
            model="zz-old",
            provider="demo",
            # The last moment of the day before the chart: after "now - 30 days".
            created_at=datetime.combine(day_before, time.max, tzinfo=UTC),
        )
    )

    chart = spend_chart_for(tenants.organization.pk)

    assert [label for label, _ in chart.legend] == [f"m{i}" for i in range(7)] + ["other"]
    assert chart.total == sum(Decimal(10 - i) for i in range(8))


def _totals_requests(html: str) -> int:
    found = re.search(r'id="usage-totals"><th>All</th><th class="num">(\d+)<', html)
    assert found, "the usage totals row"
    return int(found.group(1))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("group_by", "junk", "is not a valid choice"),
        ("key", "abc", "A valid integer is required"),
        ("status", "x", "is not a valid choice"),
    ],
)
def test_a_bad_usage_filter_is_reported_and_the_others_still_filter(tenants, name, value, message):
    _usage(tenants.organization, "demo/old", "0", days_ago=5)
    _usage(tenants.organization, "demo/a", "0")
    _usage(tenants.organization, "demo/b", "0")
    client = dashboard_client(tenants.member, tenants.organization)
    start = (timezone.now() - timedelta(days=1)).date().isoformat()

    html = client.get("/dashboard/usage/", {"start": start, name: value}).content.decode()

    assert message in html  # next to its field
    assert _totals_requests(html) == 2  # the start still applies: the old request is left out
    assert f'/api/v1/usage/export.csv?start={start}"' in html  # the export leaves the bad one out


def _models_used(organization, count: int, prefix: str = "m") -> None:
    usage_settle_batch(
        [
            UsageDraft(
                generation_id=f"gen-{prefix}{index:03}",
                organization_id=organization.pk,
                key_id=None,
                status="succeeded",
                cost=Decimal("0"),
                model=f"{prefix}{index:03}",
                provider="demo",
                created_at=timezone.now(),
            )
            for index in range(count)
        ]
    )


def _link(html: str, label: str) -> str:
    found = re.search(rf'<a href="([^"]*)">{label}</a>', html)
    assert found, label
    return unescape(found.group(1))


def test_usage_groups_pages_are_pinned_to_the_first_pages_request_time(tenants):
    """As the API's links do: a model first used while someone pages does not shift the groups
    between pages (page 2 shows the groups of page 1's range)."""
    _models_used(tenants.organization, GROUPS_PAGE + 1)
    client = dashboard_client(tenants.member, tenants.organization)

    first = client.get("/dashboard/usage/").content.decode()
    _models_used(tenants.organization, 1, prefix="z-new")  # sorts last: onto page 2
    second = client.get("/dashboard/usage/" + _link(first, "Next →")).content.decode()

    assert "end=" in _link(first, "Next →")
    assert f"m{GROUPS_PAGE:03}" in second and "z-new000" not in second
    assert _link(second, "← Previous").count("end=") == 1


def test_the_request_logs_older_link_keeps_the_page_of_groups(tenants):
    _models_used(tenants.organization, GROUPS_PAGE + 1)  # and as many requests: two log pages
    client = dashboard_client(tenants.member, tenants.organization)

    html = client.get("/dashboard/usage/", {"groups_page": "2"}).content.decode()

    assert "groups_page=2" in _link(html, "Older →")
