"""``manage.py credits_grant ORG_SLUG AMOUNT --reason TEXT``: support credits and promotions."""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Organization
from billing.models import LedgerKind
from billing.services import ledger_post


class Command(BaseCommand):
    help = "Grant (or with a negative amount, take back) credits, writing one ledger entry."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization", help="organization slug")
        parser.add_argument("amount", help="USD, e.g. 25 or 12.50 (negative to adjust down)")
        parser.add_argument("--reason", required=True, help="why; shown in the ledger")
        parser.add_argument(
            "--kind",
            choices=[LedgerKind.PROMOTION, LedgerKind.ADJUSTMENT],
            default=LedgerKind.PROMOTION,
        )
        parser.add_argument(
            "--idempotency-key", help="repeat-safe key; running again with it grants nothing more"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(slug=options["organization"]).first()
        if organization is None:
            raise CommandError(f"No organization with slug {options['organization']!r}.")
        try:
            amount = Decimal(options["amount"])
        except InvalidOperation:
            raise CommandError(
                f"AMOUNT must be a number of USD, not {options['amount']!r}."
            ) from None
        if amount == 0 or not amount.is_finite():
            raise CommandError("AMOUNT must be a non-zero number of USD.")
        entry = ledger_post(
            organization=organization,
            kind=options["kind"],
            amount=amount,
            idempotency_key=options["idempotency_key"] or f"grant:{uuid.uuid4()}",
            description=options["reason"],
        )
        self.stdout.write(
            f"{organization.slug}: {entry.amount:+f} USD ({entry.kind}); balance now {entry.balance_after:f}"
        )
