"""Demo data for ``make run``: the demo organization's credits, an API key and two weeks of usage."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from accounts.models import ApiKey, KeyScope, Organization
from accounts.services import api_key_create
from billing.drafts import UsageDraft
from billing.models import LedgerKind
from billing.services import ledger_post
from billing.settlement import usage_settle

DEMO_KEY_NAME = "Demo app"
USAGE_DAYS = 14
# (model, prompt tokens, completion tokens, USD per 1M input and output: routing.demo's prices)
_DEMO_REQUESTS = [
    ("demo/small", 40, 120, Decimal("0.10"), Decimal("0.40")),
    ("demo/medium", 60, 200, Decimal("0.40"), Decimal("1.60")),
    ("demo/large", 80, 300, Decimal("3.00"), Decimal("15.00")),
]


def seed_demo_credits(organization: Organization) -> None:
    ledger_post(
        organization=organization,
        kind=LedgerKind.PROMOTION,
        amount=settings.DEMO_CREDITS,
        idempotency_key=f"demo-credits:{organization.slug}",
        description="Demo credits",
    )


def seed_demo_usage(organization: Organization) -> None:
    """An inference key and a few requests a day for two weeks, settled like real ones.

    Generation ids are fixed per day and request, so seeding again adds nothing.
    """
    key = ApiKey.objects.filter(organization=organization, name=DEMO_KEY_NAME).first()
    if key is None:
        key = api_key_create(
            organization=organization,
            name=DEMO_KEY_NAME,
            created_by=None,
            scope=KeyScope.INFERENCE,
        ).key
    now = timezone.now()
    for day in range(USAGE_DAYS):
        for n in range(1 + day % 4):
            model, prompt, completion, price_in, price_out = _DEMO_REQUESTS[(day + n) % 3]
            routed = n % 2 == 1
            usage_settle(
                UsageDraft(
                    generation_id=f"gen-demo-seed-{organization.pk}-{day}-{n}",
                    organization_id=organization.pk,
                    key_id=key.pk,
                    status="succeeded",
                    cost=(prompt * price_in + completion * price_out) / 1_000_000,
                    model=model,
                    requested_model="router/demo-router" if routed else model,
                    provider="demo",
                    router="router/demo-router" if routed else "",
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    latency_ms=200 + 40 * n,
                    created_at=now - timedelta(days=USAGE_DAYS - 1 - day, hours=1, minutes=7 * n),
                )
            )
