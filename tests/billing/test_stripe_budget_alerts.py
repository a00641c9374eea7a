"""Budget alert emails: owners hear once per threshold (50/80/100 %) per month."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail

from accounts.models import Role
from billing.models import UsageRecord
from billing.services import credit_account_for
from billing.tasks import budget_alerts, budget_alerts_check
from tests.factories import member_add, organization_make

pytestmark = pytest.mark.django_db

_generation = itertools.count(1)
MID_MARCH = datetime(2026, 3, 15, 12, tzinfo=UTC)


def _spend(organization: Any, cost: str, at: datetime = MID_MARCH) -> None:
    UsageRecord.objects.create(
        organization=organization,
        generation_id=f"gen-{next(_generation)}",
        status="succeeded",
        cost=Decimal(cost),
        created_at=at,
    )


@pytest.fixture
def budgeted(tenants: Any) -> Any:
    tenants.organization.monthly_budget = Decimal("100")
    tenants.organization.save()
    return tenants


def test_owners_are_emailed_once_when_spend_crosses_half_the_budget(budgeted: Any):
    organization = budgeted.organization
    second_owner = member_add(organization, Role.OWNER)
    _spend(organization, "49.99")

    below = budget_alerts_check(organization=organization, now=MID_MARCH)
    _spend(organization, "0.01")
    crossed = budget_alerts_check(organization=organization, now=MID_MARCH)
    repeated = budget_alerts_check(organization=organization, now=MID_MARCH)

    assert (below, crossed, repeated) == (None, 50, None)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(
        [budgeted.owner.email, second_owner.email]
    )
    assert all(len(m.to) == 1 for m in mail.outbox)
    assert "50%" in mail.outbox[0].subject and "$50.00" in mail.outbox[0].body
    assert credit_account_for(organization.pk).budget_alert_sent == {"2026-03": 50}


def test_each_threshold_is_emailed_once_and_a_jump_sends_only_the_highest(budgeted: Any):
    organization = budgeted.organization
    _spend(organization, "85")

    jumped = budget_alerts_check(organization=organization, now=MID_MARCH)
    _spend(organization, "15")
    full = budget_alerts_check(organization=organization, now=MID_MARCH)
    again = budget_alerts_check(organization=organization, now=MID_MARCH)

    assert (jumped, full, again) == (80, 100, None)
    assert [m.subject.split(" used ")[1] for m in mail.outbox] == [
        "80% of its monthly budget",
        "100% of its monthly budget",
    ]
    assert all(m.to == [budgeted.owner.email] for m in mail.outbox)  # not admins or members


def test_a_new_month_starts_over(budgeted: Any):
    organization = budgeted.organization
    _spend(organization, "60")
    budget_alerts_check(organization=organization, now=MID_MARCH)
    april = datetime(2026, 4, 2, tzinfo=UTC)

    quiet_april = budget_alerts_check(organization=organization, now=april)
    _spend(organization, "55", at=april)
    april_alert = budget_alerts_check(organization=organization, now=april)

    assert (quiet_april, april_alert) == (None, 50)
    assert len(mail.outbox) == 2
    assert credit_account_for(organization.pk).budget_alert_sent == {"2026-04": 50}


def test_organizations_without_a_budget_get_no_alerts():
    organization = organization_make()
    _spend(organization, "1000")

    assert budget_alerts_check(organization=organization, now=MID_MARCH) is None
    assert mail.outbox == []


def test_the_periodic_task_checks_every_organization_with_a_budget(budgeted: Any):
    other = organization_make()
    other.monthly_budget = Decimal("10")
    other.save()
    _spend(budgeted.organization, "10", at=datetime.now(UTC))
    _spend(other, "9", at=datetime.now(UTC))

    sent = budget_alerts()

    assert sent == 1
    assert [m.subject for m in mail.outbox] == [
        f"[RouterHub] {other.name} used 80% of its monthly budget"
    ]


def test_a_crossed_threshold_is_also_a_budget_threshold_webhook_event(budgeted: Any):
    from webhooks.models import WebhookDelivery
    from webhooks.services import webhook_endpoint_create

    organization = budgeted.organization
    webhook_endpoint_create(
        created_by=None,
        organization=organization,
        url="https://hooks.example.com/b",
        events=["budget.threshold"],
    )
    _spend(organization, "85")

    budget_alerts_check(organization=organization, now=MID_MARCH)
    budget_alerts_check(organization=organization, now=MID_MARCH)

    [delivery] = WebhookDelivery.objects.all()
    assert delivery.event_type == "budget.threshold"
    assert delivery.payload["data"] == {
        "scope": "organization",
        "percent": 80,
        "spend": "85.00000000",
        "budget": "100",
        "month": "2026-03",
    }
