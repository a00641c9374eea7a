"""Settlement on PostgreSQL writes a batch's ledger entries against a snapshot of the balance and
locks the account row only in the statement that charges it. When the balance moves in between
(a top-up committing, another settler), the entries are rewritten against the locked balance."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.drafts import UsageDraft
from billing.models import CreditAccount, LedgerEntry, UsageRecord
from billing.services import ReservationRequest, credits_reserve, ledger_post
from billing.settlement import usage_settle_batch
from tests.conftest import require_postgres
from tests.db_locks import waiting_on_a_lock
from tests.factories import funded_organization_make
from tests.routing.servers import poll


@pytest.mark.django_db(transaction=True)
def test_a_balance_that_moves_during_settlement_is_charged_against_the_locked_balance() -> None:
    require_postgres()
    organization = funded_organization_make("1")
    drafts = []
    for i in range(2):
        generation_id = f"gen-{uuid.uuid4().hex}"
        credits_reserve(ReservationRequest(organization_id=organization.pk,
                                           generation_id=generation_id, amount=Decimal("0.4")))  # fmt: skip
        drafts.append(UsageDraft(generation_id=generation_id, organization_id=organization.pk,
                                 key_id=None, status="succeeded", cost=Decimal("0.3"),
                                 created_at=timezone.now() + timedelta(seconds=i)))  # fmt: skip

    top_up_applied, release = threading.Event(), threading.Event()

    def top_up_held_open() -> None:
        try:
            with transaction.atomic():  # the top-up holds the account row until released
                ledger_post(organization=organization, kind="topup", amount=Decimal("2"),
                            idempotency_key=f"topup:{organization.pk}")  # fmt: skip
                top_up_applied.set()
                release.wait(60)
        finally:
            connection.close()

    settled: list[str] = []

    def settle() -> None:
        try:
            settled.extend(usage_settle_batch(drafts))
        finally:
            connection.close()

    top_up = threading.Thread(target=top_up_held_open)
    top_up.start()
    assert top_up_applied.wait(60)
    settler = threading.Thread(target=settle)
    settler.start()  # snapshots a balance of 1, writes its entries, then waits for the row lock
    poll(waiting_on_a_lock)
    release.set()
    top_up.join(60)
    settler.join(60)

    assert sorted(settled) == sorted(d.generation_id for d in drafts)
    account = CreditAccount.objects.get(organization=organization)
    assert account.balance == Decimal("2.4") and account.reserved == 0
    charges = LedgerEntry.objects.filter(organization=organization, kind="usage").order_by(
        "balance_after"
    )
    assert [c.balance_after for c in charges] == [Decimal("2.4"), Decimal("2.7")]
    ledger_sum = LedgerEntry.objects.filter(organization=organization).aggregate(s=Sum("amount"))
    assert ledger_sum["s"] == account.balance
    assert UsageRecord.objects.filter(organization=organization, cost=Decimal("0.3")).count() == 2
