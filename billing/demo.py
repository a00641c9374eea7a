"""Demo data for ``make run``: the demo organization starts with DEMO_CREDITS of credits."""

from __future__ import annotations

from django.conf import settings

from accounts.models import Organization
from billing.models import LedgerKind
from billing.services import ledger_post


def seed_demo_credits(organization: Organization) -> None:
    ledger_post(
        organization=organization,
        kind=LedgerKind.PROMOTION,
        amount=settings.DEMO_CREDITS,
        idempotency_key=f"demo-credits:{organization.slug}",
        description="Demo credits",
    )
