"""The books after a run: one usage record per request, each charged once within its hold, and
every organization's ledger summing to its balance."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Sum

from accounts.models import Organization
from billing.models import CreditAccount, LedgerEntry, Reservation, UsageRecord
from billing.outbox import STREAM
from tests.reliability.live_gateway import redis_client
from tests.reliability.traffic import TOKEN, Outcome


def settled_while_running(organizations: list[Organization], served: list[Outcome]) -> bool:
    """Every 200 has its record, no hold is left and the usage stream is empty."""
    ids = [o.generation_id for o in served]
    client = redis_client()
    try:
        drained = client.xlen(STREAM) == 0
    finally:
        client.close()
    return (
        drained
        and UsageRecord.objects.filter(generation_id__in=ids).count() == len(ids)
        and not Reservation.objects.filter(organization__in=organizations, state="held").exists()
    )


def records_by_token(organizations: list[Organization]) -> dict[str, UsageRecord]:
    """Each request's usage record, found by the token in its prompt; fails on a second one."""
    by_token: dict[str, list[UsageRecord]] = defaultdict(list)
    for record in UsageRecord.objects.filter(organization__in=organizations):
        found = TOKEN.search(record.prompt)
        assert found, f"{record.generation_id} has no request token in its prompt"
        by_token[found.group()].append(record)
    doubled = {token: len(rs) for token, rs in by_token.items() if len(rs) > 1}
    assert not doubled, f"requests with more than one usage record: {doubled}"
    return {token: rs[0] for token, rs in by_token.items()}


def assert_charged_once_within_its_hold(record: UsageRecord) -> None:
    hold = Reservation.objects.get(generation_id=record.generation_id)
    assert record.cost <= hold.amount, (record.generation_id, record.cost, hold.amount)
    charges = list(LedgerEntry.objects.filter(reference=record.generation_id))
    if record.cost > 0:
        assert [c.amount for c in charges] == [-record.cost]
        assert charges[0].idempotency_key == f"usage:{record.generation_id}"
        assert hold.state == "settled"
    else:
        assert charges == [] and hold.state == "released"


def assert_ledger_is_the_balance(organization: Organization) -> None:
    """Balance = sum of the ledger, never negative on the way; usage charges = usage records."""
    account = CreditAccount.objects.get(organization=organization)
    entries = LedgerEntry.objects.filter(organization=organization)
    assert account.balance >= 0 and account.reserved == 0
    assert account.balance == entries.aggregate(s=Sum("amount"))["s"]
    assert not entries.filter(balance_after__lt=0).exists()
    spent = UsageRecord.objects.filter(organization=organization).aggregate(s=Sum("cost"))["s"]
    assert -entries.filter(kind="usage").aggregate(s=Sum("amount"))["s"] == spent
    assert account.total_used == spent
