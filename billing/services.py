"""Writes for billing: the ledger, reserve-then-settle of gateway requests, usage records.

Concurrency lives in SQL: a reservation is a conditional ``UPDATE`` of the organization's hold row
``… WHERE balance + released - held >= x`` (``billing.models.CreditHold``; and the same on the key's
spend window) so two requests can never both spend the last dollar;
settlement releases the hold and charges the real cost in one transaction, keyed by the
generation id so it happens once however often it is retried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction
from django.db.models import F, Subquery
from django.utils import timezone

from accounts.models import Membership, Organization, Role, User
from billing.holds import RESERVE_SQL, Held, hold_grouped
from billing.key_windows import key_windows_reserve
from billing.models import (
    CreditAccount,
    CreditHold,
    LedgerEntry,
    LedgerKind,
    Reservation,
    ReservationState,
)
from billing.pg_async import pg_fetchone
from billing.settlement import reservations_reconcile, reservations_release
from billing.starter_inbox import domain_granted_enough, inbox_granted, inbox_of
from billing.starter_verification import address_verified
from billing.windows import LimitBound
from routerhub.errors import InsufficientCredits, ServiceUnavailable
from routerhub.money import ZERO, money, money_str

logger = logging.getLogger(__name__)

RESERVATION_TTL = timedelta(minutes=15)
# The first key of the advisory lock that grants one inbox's starter credits one at a time.


def credit_account_for(organization_id: int) -> CreditAccount:
    account, _ = CreditAccount.objects.get_or_create(organization_id=organization_id)
    return account


@transaction.atomic
def ledger_post(
    *,
    organization: Organization,
    kind: str,
    amount: Decimal,
    idempotency_key: str,
    description: str = "",
    reference: str = "",
) -> LedgerEntry:
    """Apply a signed amount to the balance with its ledger entry, once per idempotency key.

    A debit larger than the balance takes the balance to zero, never below (a refund of
    credits already spent); the entry records what was actually taken.
    """
    amount = money(amount)
    credit_account_for(organization.pk)
    # Lock the account first: concurrent posts of the same idempotency key then serialise
    # here and the second one finds the first one's entry.
    account = CreditAccount.objects.select_for_update().get(organization=organization)
    existing = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    if amount < 0:
        amount = -min(-amount, account.balance)
        # ``balance + released`` never decreases (what reservations rely on, ``CreditHold``):
        # the debit goes to both ``released`` and ``held``, so ``reserved`` is unchanged.
        account.released -= amount
        CreditHold.objects.filter(account_id=organization.pk).update(held=F("held") - amount)
    account.balance += amount
    if kind == LedgerKind.TOPUP:
        account.total_purchased += amount
    account.save(update_fields=["balance", "released", "total_purchased", "updated_at"])
    return LedgerEntry.objects.create(
        organization=organization,
        kind=kind,
        amount=amount,
        balance_after=account.balance,
        idempotency_key=idempotency_key,
        description=description[:300],
        reference=reference[:120],
    )


def starter_credits_grant(
    *, organization: Organization, owner: User | None = None
) -> LedgerEntry | None:
    """Grant STARTER_CREDITS_USD once per person: to the first organization its creator
    (``owner``, else the organization's first owner) makes, never to the next ones (each new
    organization was granted them: free credits without end for one confirmed address). The
    ledger key names the person and their row is locked first, so organizations created at once
    cannot both pass the check; an organization without an owner is keyed by itself. Once per
    inbox too: a person whose address reaches an inbox already granted (``billing.starter_inbox``)
    gets none, nor one whose domain had STARTER_CREDITS_PER_DOMAIN grants. Only once the address is verified (``billing.starter_verification``)."""
    amount = settings.STARTER_CREDITS_USD
    if amount <= 0:
        return None
    person = owner.pk if owner is not None else _first_owner_id(organization)
    inbox = ""
    with transaction.atomic():
        key = f"starter-credits:{organization.pk}"
        if person is not None:
            # Held until the caller's (organization_create's) transaction commits.
            list(User.objects.select_for_update().filter(pk=person).values_list("pk"))
            key = f"starter-credits:person:{person}"
            if _granted_per_organization(person, organization):
                return None
            if not address_verified(person):
                # Granted when it is (``billing.starter_verification``): not before, or an
                # unconfirmed sign-up of someone's ``+tag`` variant took their inbox's grant.
                credit_account_for(organization.pk)
                return None
            found = inbox_of(person)
            inbox = found.reference if found else ""
            if found and (inbox_granted(found) or domain_granted_enough(found)):
                credit_account_for(organization.pk)  # a balance of 0, as a second grant leaves
                return None
        return ledger_post(
            organization=organization,
            kind=LedgerKind.PROMOTION,
            amount=amount,
            idempotency_key=key,
            description="Starter credits for a first request (demo models included)",
            reference=inbox,
        )


def _granted_per_organization(person: int, organization: Organization) -> bool:
    """Whether the person got starter credits when they were granted per organization (ledger
    key ``starter-credits:<organization>``): to this organization or to one they created. Without
    this, everyone granted them then was granted them again with their next organization."""
    created = Organization.objects.filter(created_by_id=person).values_list("pk", flat=True)
    keys = [f"starter-credits:{pk}" for pk in {organization.pk, *created}]
    return LedgerEntry.objects.filter(idempotency_key__in=keys).exists()


def _first_owner_id(organization: Organization) -> int | None:
    owners = Membership.objects.filter(organization=organization, role=Role.OWNER)
    first: int | None = (
        owners.order_by("created_at", "pk").values_list("user_id", flat=True).first()
    )
    return first


@dataclass(frozen=True)
class ReservationRequest:
    organization_id: int
    generation_id: str
    amount: Decimal
    key_id: int | None = None
    key_limit: Decimal | None = None
    key_limit_reset: str | None = None
    # The limits of the key's ancestors (``billing.key_windows``): its spend counts in them too.
    ancestors: tuple[LimitBound, ...] = ()


# What a refused hold reports as available (402's metadata).
_AVAILABLE_SQL = """
SELECT account.balance + account.released - hold.held
FROM billing_creditaccount AS account
JOIN billing_credithold AS hold ON hold.organization_id = account.organization_id
WHERE account.organization_id = %(organization)s
"""


def _insufficient(available: Decimal, amount: Decimal) -> InsufficientCredits:
    return InsufficientCredits(
        "Insufficient credits for this request; add credits or lower max_tokens.",
        metadata={"available": money_str(max(ZERO, available)), "needed": money_str(amount)},
    )


def _available(organization_id: int) -> Decimal:
    account = (
        CreditAccount.objects.select_related("hold").filter(organization_id=organization_id).first()
    )
    return ZERO if account is None else account.balance - account.reserved


def _one_statement(request: ReservationRequest) -> bool:
    """The reservation strategy, decided here and nowhere else.

    * A key with a credit limit, or made by a key with one (``billing.key_windows``), or a
      database other than PostgreSQL: ``_reserve_in_transaction``, an ORM transaction that
      updates the hold row, then locks the spend windows (in key id order), then inserts the
      reservation (the lock order of ``billing.settlement``: account, hold, windows).
    * Otherwise (the common case): ``billing.holds.RESERVE_SQL``, one statement that holds and
      records. From the gateway's event loop it runs on the gateway's own connections
      (``billing.pg_async``, ``credits_reserve_async``), in one statement with the holds of
      the requests queued beside it (``billing.holds``); from synchronous code on Django's
      (``credits_reserve``).
    """
    on_postgres = connections.settings["default"]["ENGINE"].endswith("postgresql")
    return on_postgres and not _key_windows(request)


def _key_windows(request: ReservationRequest) -> bool:
    """Whether the hold counts in a key spend window: the key's own, or an ancestor's."""
    return bool(request.ancestors) or (request.key_id is not None and request.key_limit is not None)


def _reserve_params(request: ReservationRequest) -> dict[str, Any]:
    """``RESERVE_SQL``'s parameters (the one place they are built)."""
    now = timezone.now()
    return {
        "amount": money(request.amount),
        "organization": request.organization_id,
        "key": request.key_id,
        "generation": request.generation_id,
        "now": now,
        "expires": now + RESERVATION_TTL,
    }


def credits_reserve(request: ReservationRequest) -> None:
    """Hold the maximum possible cost of a request before it is forwarded (synchronous code;
    the gateway calls ``credits_reserve_async``). Strategy: ``_one_statement``.

    Raises ``InsufficientCredits`` (402) or ``KeyLimitReached`` (403); on either nothing is held.
    """
    if not _one_statement(request):
        _reserve_in_transaction(request)
        return
    with connection.cursor() as cursor:
        cursor.execute(RESERVE_SQL, _reserve_params(request))
        if cursor.fetchone() is None:
            raise _insufficient(_available(request.organization_id), money(request.amount))


@transaction.atomic
def _reserve_in_transaction(request: ReservationRequest) -> None:
    amount, now = money(request.amount), timezone.now()
    # The account is read, not locked (``CreditHold``): a settler's open transaction never
    # holds this up; ``balance + released`` only grows, so the snapshot is conservative.
    covered = CreditAccount.objects.filter(pk=request.organization_id).values(
        total=F("balance") + F("released")
    )
    held = CreditHold.objects.filter(
        account_id=request.organization_id, held__lte=Subquery(covered) - amount
    ).update(held=F("held") + amount)
    if not held:
        raise _insufficient(_available(request.organization_id), amount)
    key_window, ancestor_windows = (
        key_windows_reserve(request, now) if _key_windows(request) else (None, [])
    )
    Reservation.objects.create(
        organization_id=request.organization_id,
        generation_id=request.generation_id,
        key_id=request.key_id,
        amount=amount,
        key_window_start=key_window,
        ancestor_windows=ancestor_windows,
        expires_at=now + RESERVATION_TTL,
    )


async def credits_reserve_async(request: ReservationRequest) -> None:
    """``credits_reserve`` for the gateway (through ``billing.metering.hold``): the one
    statement runs on the event loop (``billing.pg_async``); the transaction in a thread."""
    if not _one_statement(request):
        await sync_to_async(_reserve_in_transaction, thread_sensitive=False)(request)
        return
    params = _reserve_params(request)
    try:
        held = await hold_grouped(params)
        if held is Held.RETRY:  # a batch could not fit it: the one statement decides
            held = Held.HELD if await pg_fetchone(RESERVE_SQL, params) else Held.REFUSED
        if held is Held.HELD:
            return
        row = await pg_fetchone(_AVAILABLE_SQL, {"organization": request.organization_id})
    except psycopg.Error as exc:
        logger.warning("credit reservation unavailable: %s", type(exc).__name__)
        raise ServiceUnavailable(
            "The service is temporarily unavailable; retry in a moment.",
            headers={"Retry-After": "1"},
        ) from exc
    raise _insufficient(ZERO if row is None else row[0], money(request.amount))


async def credits_available_async(organization_id: int) -> Decimal:
    """What the organization's balance has beyond every hold on it (a snapshot, unlocked)."""
    row = await pg_fetchone(_AVAILABLE_SQL, {"organization": organization_id})
    return ZERO if row is None else money(row[0])


_FREE_SQL = """
UPDATE billing_reservation SET state = 'free'
WHERE generation_id = %(generation)s AND state = 'held'
RETURNING id
"""


async def reservation_mark_free_async(generation_id: str) -> None:
    """Record in PostgreSQL that a request has nothing to charge (it failed before any answer),
    so that its hold is released for free even if its usage draft is lost with Redis.

    Only requests with nothing to charge pay this statement; a served request's hold is
    charged at its amount by the sweep unless its draft settles it first. A failure here is
    logged: the draft, when it arrives, still releases the hold."""
    on_postgres = connections.settings["default"]["ENGINE"].endswith("postgresql")
    try:
        if on_postgres:
            await pg_fetchone(_FREE_SQL, {"generation": generation_id})
            return
        await Reservation.objects.filter(
            generation_id=generation_id, state=ReservationState.HELD
        ).aupdate(state=ReservationState.FREE)
    except (psycopg.Error, DatabaseError) as exc:
        logger.warning("could not mark %s as free: %s", generation_id, type(exc).__name__)


def reservations_sweep(*, now: datetime | None = None, charge: bool = True) -> int:
    """Settle expired holds whose usage never arrived; returns how many.

    A hold the gateway marked ``free`` is released without a charge. Any other (its draft was
    lost with a Redis that lost its data, or its worker died mid-request) is charged at its held
    amount, recorded with ``reconciled_from_hold`` (``reservations_reconcile``): a served
    request is never released for free, and a draft arriving later charges nothing more. Call
    it after the usage outbox is drained (``billing.sweep_reservations`` does), so a draft that
    is merely late settles at its real cost first; ``charge=False`` only releases free holds.
    """
    expired = list(
        Reservation.objects.filter(
            state__in=(ReservationState.HELD, ReservationState.FREE),
            expires_at__lt=now or timezone.now(),
        ).order_by("pk")[:1000]
    )
    released = reservations_release([r for r in expired if r.state == ReservationState.FREE])
    unsettled = [r for r in expired if r.state == ReservationState.HELD] if charge else []
    charged = reservations_reconcile(unsettled)
    if released:
        logger.warning("released %d expired credit reservations with nothing to charge", released)
    if charged:
        logger.error(
            "charged %d expired credit reservations their held amount: their usage never arrived",
            len(charged),
        )
    return released + len(charged)
