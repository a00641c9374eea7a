"""The admin says who stopped an aborted request: its record's ``error_type`` names the client
leaving (``client_disconnected``) or the server cancelling the handler (``server_cancelled``: a
worker's shutdown drain, a deadline). Before, every aborted request read "Aborted by client"."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.test import Client

from billing.models import UsageRecord, UsageStatus
from tests.factories import organization_make, user_make

pytestmark = pytest.mark.django_db


def _record(organization: object, generation_id: str, status: str, error_type: str) -> None:
    UsageRecord.objects.create(
        organization=organization,
        generation_id=generation_id,
        model="test/gpt",
        status=status,
        error_type=error_type,
        created_at=datetime.now(UTC),
    )


def _row(page: str, generation_id: str) -> str:
    rows = re.findall(r"<tr[^>]*>.*?</tr>", page, re.S)
    return next(row for row in rows if generation_id in row)


def test_the_admin_labels_an_aborted_request_by_who_stopped_it() -> None:
    organization = organization_make()
    _record(organization, "gen-left", "aborted", "client_disconnected")
    _record(organization, "gen-drained", "aborted", "server_cancelled")
    _record(organization, "gen-unknown", "aborted", "")
    _record(organization, "gen-ok", "succeeded", "")
    operator = user_make()
    operator.is_staff = operator.is_superuser = True
    operator.save(update_fields=["is_staff", "is_superuser"])
    admin = Client()
    admin.force_login(operator)

    page = admin.get("/admin/billing/usagerecord/").content.decode()

    assert "Aborted: client disconnected" in _row(page, "gen-left")
    assert "Aborted: server cancelled (shutdown or deadline)" in _row(page, "gen-drained")
    neutral = "Aborted (client disconnected or server cancelled)"
    assert neutral in _row(page, "gen-unknown")
    assert "Succeeded" in _row(page, "gen-ok")
    assert "Aborted by client" not in page
    assert UsageStatus.ABORTED.label == neutral  # the status filter and the dashboard's
