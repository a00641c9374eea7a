"""Usage records and ledger entries are partitioned by month (PostgreSQL), and the money
guarantees their unique constraints gave still hold: a generation id is settled once and a ledger
key posted once, whichever month each copy would land in, even for settlers racing each other.
Partitions are created ahead (rows that landed in the default partition are moved into their
month) and whole months of usage records past USAGE_RECORD_RETENTION_MONTHS are dropped."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.drafts import UsageDraft
from billing.models import (
    CreditAccount,
    LedgerEntry,
    LedgerIdempotency,
    Reservation,
    UsageGeneration,
    UsageRecord,
    UsageRollup,
)
from billing.partitions import (
    month_add,
    month_floor,
    partition_create,
    partition_name,
    partitions_ensure,
    usage_partitions_drop,
)
from billing.services import ReservationRequest, credits_reserve, ledger_post, reservations_sweep
from billing.settlement import usage_settle_batch
from routing.models import Feedback
from tests.conftest import require_postgres
from tests.db_locks import waiting_on_a_lock
from tests.factories import organization_make
from tests.routing.servers import poll

THIS_MONTH = month_floor(timezone.now())


def _at(month: date, day: int = 10) -> datetime:
    return datetime(month.year, month.month, day, 12, tzinfo=UTC)


def _draft(organization_id: int, generation_id: str, created_at: datetime, cost: str) -> UsageDraft:
    return UsageDraft(generation_id=generation_id, organization_id=organization_id, key_id=None,
                      status="succeeded", cost=Decimal(cost), created_at=created_at)  # fmt: skip


def _where(generation_id: str) -> list[str]:
    """The partitions holding the generation's usage records."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM billing_usagerecord WHERE generation_id = %s",
            [generation_id],
        )
        return [row[0] for row in cursor.fetchall()]


def _grant(organization, amount: str) -> None:  # type: ignore[no-untyped-def]
    ledger_post(organization=organization, kind="promotion", amount=Decimal(amount),
                idempotency_key=f"grant:{organization.pk}")  # fmt: skip


def _assert_charged_once(organization, generation_id: str, balance: str) -> None:  # type: ignore[no-untyped-def]
    assert UsageRecord.objects.filter(generation_id=generation_id).count() == 1
    assert LedgerEntry.objects.filter(idempotency_key=f"usage:{generation_id}").count() == 1
    account = CreditAccount.objects.get(organization=organization)
    ledger = LedgerEntry.objects.filter(organization=organization).aggregate(s=Sum("amount"))["s"]
    assert account.balance == Decimal(balance) == ledger


@pytest.mark.django_db
def test_a_days_usage_query_reads_only_its_months_partition() -> None:
    require_postgres()
    start = _at(THIS_MONTH, 3)
    plan = str(
        UsageRecord.objects.filter(
            organization_id=1, created_at__gte=start, created_at__lt=start + timedelta(days=1)
        ).explain()
    )
    assert partition_name("billing_usagerecord", THIS_MONTH) in plan
    assert partition_name("billing_usagerecord", month_add(THIS_MONTH, 1)) not in plan
    assert "billing_usagerecord_default" not in plan


@pytest.mark.django_db
def test_a_generation_id_is_recorded_once_whatever_month_its_copy_carries() -> None:
    """The guard table's primary key, not the partitioned table, refuses the second record."""
    require_postgres()
    organization = organization_make()
    generation_id = f"gen-{uuid.uuid4().hex}"
    usage_settle_batch([_draft(organization.pk, generation_id, _at(THIS_MONTH), "0")])
    with pytest.raises(IntegrityError), transaction.atomic():
        UsageRecord.objects.create(organization=organization, generation_id=generation_id,
                                   status="succeeded", created_at=_at(month_add(THIS_MONTH, 1)))  # fmt: skip
    assert _where(generation_id) == [partition_name("billing_usagerecord", THIS_MONTH)]
    assert UsageGeneration.objects.filter(pk=generation_id).count() == 1


@pytest.mark.django_db
def test_a_ledger_key_is_posted_once_across_months_and_released_with_its_entry() -> None:
    require_postgres()
    organization = organization_make()
    _grant(organization, "2")
    entry = LedgerEntry.objects.get(idempotency_key=f"grant:{organization.pk}")
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(organization=organization, kind="promotion", amount=1,
                                   balance_after=3, idempotency_key=entry.idempotency_key,
                                   created_at=_at(month_add(THIS_MONTH, 2)))  # fmt: skip
    assert ledger_post(organization=organization, kind="promotion", amount=Decimal("2"),
                       idempotency_key=entry.idempotency_key).pk == entry.pk  # fmt: skip
    assert CreditAccount.objects.get(organization=organization).balance == Decimal("2")
    entry.delete()  # what settlement does to rewrite an entry against a locked balance
    assert not LedgerIdempotency.objects.filter(pk=entry.idempotency_key).exists()


@pytest.mark.django_db(transaction=True)
def test_two_settlers_racing_one_generation_id_in_different_months_charge_it_once() -> None:
    """The second settler passes the "already settled?" check while the first has not committed,
    then waits on the guard row: its record (another month's partition) is refused."""
    require_postgres()
    organization = organization_make()
    _grant(organization, "1")
    generation_id = f"gen-{uuid.uuid4().hex}"
    first_settled, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def first() -> None:
        try:
            with transaction.atomic():
                usage_settle_batch([_draft(organization.pk, generation_id,
                                           _at(month_add(THIS_MONTH, -2)), "0.3")])  # fmt: skip
                first_settled.set()
                release.wait(60)
        finally:
            connection.close()

    def second() -> None:
        try:
            outcome.append(usage_settle_batch([_draft(organization.pk, generation_id,
                                                      timezone.now(), "0.3")]))  # fmt: skip
        except IntegrityError as exc:
            outcome.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_settled.wait(60)
    threads[1].start()
    poll(waiting_on_a_lock)
    release.set()
    for thread in threads:
        thread.join(60)

    assert len(outcome) == 1 and isinstance(outcome[0], IntegrityError)
    assert _where(generation_id) == ["billing_usagerecord_default"]  # the first one's
    _assert_charged_once(organization, generation_id, "0.7")


@pytest.mark.django_db(transaction=True)
def test_a_late_draft_of_another_month_after_the_sweep_charged_its_hold_charges_nothing() -> None:
    require_postgres()
    organization = organization_make()
    _grant(organization, "1")
    generation_id = f"gen-{uuid.uuid4().hex}"
    credits_reserve(ReservationRequest(organization_id=organization.pk,
                                       generation_id=generation_id, amount=Decimal("0.4")))  # fmt: skip
    Reservation.objects.filter(generation_id=generation_id).update(  # a hold of last month
        created_at=_at(month_add(THIS_MONTH, -1)), expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert reservations_sweep() == 1

    assert usage_settle_batch([_draft(organization.pk, generation_id, timezone.now(), "0.2")]) == []
    _assert_charged_once(organization, generation_id, "0.6")


@pytest.mark.django_db
def test_a_missing_month_is_created_with_the_rows_the_default_partition_caught() -> None:
    require_postgres()
    organization = organization_make()
    _grant(organization, "1")
    month = month_add(THIS_MONTH, 9)  # beyond the months created ahead
    generation_id = f"gen-{uuid.uuid4().hex}"
    usage_settle_batch([_draft(organization.pk, generation_id, _at(month), "0.25")])
    assert _where(generation_id) == ["billing_usagerecord_default"]

    created = partitions_ensure(now=_at(month))

    assert partition_name("billing_usagerecord", month) in created
    assert _where(generation_id) == [partition_name("billing_usagerecord", month)]
    assert not partition_create("billing_usagerecord", month)  # idempotent
    # Moved rows keep their claims: the id is still settled once.
    assert usage_settle_batch([_draft(organization.pk, generation_id, _at(month), "0.25")]) == []
    _assert_charged_once(organization, generation_id, "0.75")
    with pytest.raises(IntegrityError), transaction.atomic():  # the guard is back on at once
        UsageRecord.objects.create(organization=organization, generation_id=generation_id,
                                   status="succeeded", created_at=timezone.now())  # fmt: skip


@pytest.mark.django_db
def test_months_past_the_retention_are_dropped_whole_and_rollups_keep_their_totals(
    settings,
) -> None:  # type: ignore[no-untyped-def]
    require_postgres()
    organization = organization_make()
    old, kept = month_add(THIS_MONTH, -3), month_add(THIS_MONTH, -1)
    for month in (old, kept):
        partition_create("billing_usagerecord", month)
    usage_settle_batch([_draft(organization.pk, "gen-old", _at(old), "0"),
                        _draft(organization.pk, "gen-kept", _at(kept), "0")])  # fmt: skip
    Feedback.objects.create(organization=organization, usage_id="gen-old", score=1)
    with connection.cursor() as cursor:  # the test's transaction: check its deferred keys now
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    settings.USAGE_RECORD_RETENTION_MONTHS = 0
    assert usage_partitions_drop() == []
    settings.USAGE_RECORD_RETENTION_MONTHS = 2

    assert usage_partitions_drop() == [partition_name("billing_usagerecord", old)]

    assert list(UsageRecord.objects.values_list("generation_id", flat=True)) == ["gen-kept"]
    assert list(UsageGeneration.objects.values_list("pk", flat=True)) == ["gen-kept"]
    assert not Feedback.objects.exists()
    assert (
        UsageRollup.objects.filter(organization=organization).aggregate(n=Sum("requests"))["n"] == 2
    )
