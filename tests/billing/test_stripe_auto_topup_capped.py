"""When AUTO_TOPUPS_PER_ORGANIZATION_PER_DAY holds an automatic top-up back (the balance still
under the threshold), the organization hears of it once: a warning in the log and the
``credits.auto_topup_capped`` webhook, not a silent stop nor one event a minute."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest

from billing.models import Payment, PaymentKind, PaymentStatus
from billing.services import credit_account_for
from billing.stripe.payments import auto_topup_run
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_endpoint_create

pytestmark = pytest.mark.django_db


def test_the_daily_cap_is_announced_once_by_webhook_and_log(
    tenants: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_never_called"  # capped: Stripe is not reached
    settings.AUTO_TOPUPS_PER_ORGANIZATION_PER_DAY = 2
    organization = tenants.organization
    account = credit_account_for(organization.pk)
    account.auto_topup_threshold, account.auto_topup_amount = Decimal("10000"), Decimal("5")
    account.stripe_customer_id = "cus_capped"
    account.save()
    for _ in range(2):  # today's two top-ups, paid, the balance still under the threshold
        Payment.objects.create(
            organization=organization,
            kind=PaymentKind.AUTO_TOPUP,
            status=PaymentStatus.SUCCEEDED,
            amount=Decimal("5"),
            fee=Decimal("0.80"),
        )
    webhook_endpoint_create(
        created_by=None,
        organization=organization,
        url="http://127.0.0.1:9/hook",
        events=["credits.auto_topup_capped"],
    )

    with caplog.at_level(logging.WARNING, logger="billing.stripe.payments"):
        checks = [auto_topup_run(organization=organization) for _ in range(3)]

    assert checks == [None, None, None]
    assert Payment.objects.filter(organization=organization).count() == 2
    deliveries = WebhookDelivery.objects.filter(organization=organization)
    assert [d.event_type for d in deliveries] == ["credits.auto_topup_capped"]
    data = deliveries[0].payload["data"]
    assert data["threshold"] == "10000.00" and data["amount"] == "5.00"
    assert data["topups_per_day"] == 2 and data["resumes_at"]
    warnings = [r for r in caplog.records if "AUTO_TOPUPS_PER_ORGANIZATION_PER_DAY" in r.message]
    assert len(warnings) == 1
