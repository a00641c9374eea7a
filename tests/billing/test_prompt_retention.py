"""Stored prompts are blanked after USAGE_PROMPT_RETENTION_DAYS; the records stay."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import retention
from billing.models import UsageRecord
from billing.retention import prompts_expire
from billing.settlement import UsageDraft, usage_settle_batch

pytestmark = pytest.mark.django_db


def _record(organization, name: str, age_days: float, prompt: str) -> None:  # type: ignore[no-untyped-def]
    usage_settle_batch([UsageDraft(generation_id=name, organization_id=organization.pk, key_id=None,
                                   status="succeeded", cost=Decimal(0), prompt=prompt,
                                   created_at=timezone.now() - timedelta(days=age_days))])  # fmt: skip


def test_prompts_older_than_the_retention_are_blanked_in_batches(tenants, settings, monkeypatch):  # type: ignore[no-untyped-def]
    settings.USAGE_PROMPT_RETENTION_DAYS = 30
    monkeypatch.setattr(retention, "BATCH_ROWS", 2)
    for i in range(5):
        _record(tenants.organization, f"gen-old-{i}", 31 + i, "an old secret")
    _record(tenants.organization, "gen-new", 29, "a recent prompt")

    assert prompts_expire() == 5

    prompts = dict(UsageRecord.objects.values_list("generation_id", "prompt"))
    assert prompts == {**{f"gen-old-{i}": "" for i in range(5)}, "gen-new": "a recent prompt"}


def test_retention_off_keeps_every_prompt(tenants, settings):  # type: ignore[no-untyped-def]
    settings.USAGE_PROMPT_RETENTION_DAYS = 0
    _record(tenants.organization, "gen-old", 400, "kept")
    assert prompts_expire() == 0
    assert UsageRecord.objects.get().prompt == "kept"
