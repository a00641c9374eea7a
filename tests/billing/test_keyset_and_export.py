"""The ledger pages by keyset (no row repeated or skipped while new entries arrive, previous
pages reachable, a bad cursor a clear 400) and the CSV export streams in keyset batches: every
row once in order across batches, and under ASGI through an async iterator (Django buffers a
synchronous one whole before sending it)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.utils import timezone

from accounts.models import KeyScope
from billing import usage_export
from billing.models import LedgerEntry
from billing.services import ledger_post
from billing.settlement import UsageDraft, usage_settle_batch
from tests.factories import key_client, key_make

pytestmark = pytest.mark.django_db


def _grant(organization, n: int) -> None:  # type: ignore[no-untyped-def]
    ledger_post(organization=organization, kind="promotion", amount=Decimal("1"),
                idempotency_key=f"grant:{organization.pk}:{n}")  # fmt: skip


def test_ledger_pages_have_no_duplicates_or_gaps_while_entries_arrive(tenants):  # type: ignore[no-untyped-def]
    organization = tenants.organization
    for n in range(23):
        _grant(organization, n)
    # Same timestamps for several rows: the id breaks ties.
    LedgerEntry.objects.filter(organization=organization, id__in=LedgerEntry.objects.filter(
        organization=organization).order_by("id").values("id")[5:12]).update(
        created_at=timezone.now() - timedelta(minutes=1))  # fmt: skip
    original = list(LedgerEntry.objects.filter(organization=organization)
                    .order_by("-created_at", "-id").values_list("id", flat=True))  # fmt: skip
    manage = key_client(key_make(organization, scope=KeyScope.MANAGE))

    seen, url, pages = [], "/api/v1/ledger?limit=5", 0
    while url:
        body = manage.get(url).json()
        seen += [row["id"] for row in body["results"]]
        _grant(organization, 100 + pages)  # a newer entry between every two pages
        url, pages = body["next"], pages + 1
    assert seen == original
    assert pages == 5
    assert "count" not in body  # counting every row is what keyset pages avoid


def test_ledger_previous_page_is_the_page_before(tenants):  # type: ignore[no-untyped-def]
    for n in range(12):
        _grant(tenants.organization, n)
    manage = key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))
    first = manage.get("/api/v1/ledger?limit=5").json()
    assert first["previous"] is None
    second = manage.get(first["next"]).json()
    back = manage.get(second["previous"]).json()
    assert [r["id"] for r in back["results"]] == [r["id"] for r in first["results"]]
    assert back["previous"] is None and back["next"] is not None


def test_a_bad_cursor_or_limit_is_a_clear_400(tenants):  # type: ignore[no-untyped-def]
    manage = key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))
    response = manage.get("/api/v1/ledger?cursor=not-a-cursor")
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]["message"]
    assert manage.get("/api/v1/ledger?limit=0").status_code == 400
    # A superscript two is a digit to str.isdigit but not to int(): it was a 500.
    assert manage.get("/api/v1/ledger?limit=%C2%B2").status_code == 400
    # Past 4,300 digits int() raises ValueError: it was a 500.
    assert manage.get(f"/api/v1/ledger?limit={'1' * 5000}").status_code == 400


@pytest.fixture
def recorded(tenants):  # type: ignore[no-untyped-def]
    organization = tenants.organization
    _grant(organization, 0)
    when = timezone.now() - timedelta(hours=2)
    drafts = [UsageDraft(generation_id=f"gen-export-{i:03d}", organization_id=organization.pk,
                         key_id=None, status="succeeded", cost=Decimal("0.001"), model="demo/small",
                         created_at=when + timedelta(seconds=i // 3))  # ties on created_at
              for i in range(25)]  # fmt: skip
    usage_settle_batch(drafts)
    return tenants, [d.generation_id for d in drafts]


def test_csv_export_sends_every_row_once_in_order_across_batches(recorded, monkeypatch):  # type: ignore[no-untyped-def]
    tenants, ids = recorded
    monkeypatch.setattr(usage_export, "BATCH_ROWS", 4)
    manage = key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))

    response = manage.get("/api/v1/usage/export.csv")

    chunks = list(response.streaming_content)
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert [row["id"] for row in rows] == ids
    assert len(chunks) == 1 + 7  # the header, then 25 rows in batches of 4
    assert rows[0]["cost"] == "0.00100000" and rows[0]["key_name"] == ""


def test_csv_export_streams_through_an_async_iterator_under_asgi(recorded, monkeypatch):  # type: ignore[no-untyped-def]
    tenants, ids = recorded
    monkeypatch.setattr(usage_export, "BATCH_ROWS", 10)
    plaintext = key_make(tenants.organization, scope=KeyScope.MANAGE)

    async def export() -> tuple[bool, list[bytes]]:
        response = await AsyncClient().get("/api/v1/usage/export.csv",
                                           headers={"Authorization": f"Bearer {plaintext}"})  # fmt: skip
        return response.is_async, [chunk async for chunk in response.streaming_content]

    is_async, chunks = async_to_sync(export)()
    assert is_async
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert [row["id"] for row in rows] == ids


def test_dashboard_credits_page_pages_the_ledger_by_cursor(tenants):  # type: ignore[no-untyped-def]
    import re

    from tests.factories import dashboard_client

    for n in range(30):
        _grant(tenants.organization, n)
    browser = dashboard_client(tenants.owner, tenants.organization)

    first = browser.get("/dashboard/credits/")
    older = re.search(r'href="\?cursor=([\w-]+)">Older', first.content.decode())
    assert older is not None and len(first.context["page"].object_list) == 25
    second = browser.get(f"/dashboard/credits/?cursor={older.group(1)}")
    rows = second.context["page"].object_list
    assert (
        len(rows) == 5
        and "Newer" in second.content.decode()
        and "Older" not in second.content.decode()
    )
    shown = [e.pk for e in first.context["page"].object_list] + [e.pk for e in rows]
    assert sorted(shown) == sorted(
        LedgerEntry.objects.filter(organization=tenants.organization).values_list("pk", flat=True)
    )
    assert browser.get("/dashboard/credits/?cursor=garbage").status_code == 200  # the first page
