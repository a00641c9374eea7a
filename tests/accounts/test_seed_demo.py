"""``manage.py seed_demo`` (``make run``): the demo login opens on a product in use, once."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.models import ApiKey, KeyScope, Organization
from billing.models import CreditAccount, LedgerEntry, UsageRecord
from tests.factories import dashboard_client
from training.models import Router, TrainingRun

pytestmark = pytest.mark.django_db


def _counts(organization: Organization) -> tuple[int, ...]:
    return (
        Router.objects.filter(organization=organization).count(),
        TrainingRun.objects.filter(organization=organization).count(),
        ApiKey.objects.filter(organization=organization).count(),
        UsageRecord.objects.filter(organization=organization).count(),
        LedgerEntry.objects.filter(organization=organization).count(),
    )


def test_seed_demo_gives_a_trained_router_a_key_and_usage_and_is_idempotent(media: Path) -> None:
    call_command("seed_demo")
    organization = Organization.objects.get(slug="demo")
    first = _counts(organization)

    call_command("seed_demo")

    router = Router.objects.get(organization=organization, slug="demo-router")
    assert router.active_version is not None
    assert sorted(router.active_version.candidates) == ["demo/large", "demo/medium", "demo/small"]
    assert ApiKey.objects.filter(organization=organization, scope=KeyScope.INFERENCE).count() == 1
    usage = UsageRecord.objects.filter(organization=organization)
    assert usage.count() >= 20 and len({r.created_at.date() for r in usage}) == 14
    assert usage.filter(router="router/demo-router").exists()
    balance = CreditAccount.objects.get(organization=organization).balance
    assert 0 < balance < 5  # the demo credits, less the seeded usage
    assert _counts(organization) == first  # seeding again adds nothing


def test_the_demo_login_first_sees_the_router_report_and_usage(media: Path) -> None:
    call_command("seed_demo")
    organization = Organization.objects.get(slug="demo")
    owner = organization.memberships.get().user  # type: ignore[attr-defined]
    client = dashboard_client(owner, organization)

    router_page = client.get("/dashboard/routers/demo-router/").content.decode()
    usage_page = client.get("/dashboard/usage/").content.decode()

    assert '<svg class="chart"' in router_page and "Active version 1" in router_page
    assert "gen-demo-seed-" in usage_page and "Demo app" in usage_page
