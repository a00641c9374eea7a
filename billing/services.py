"""Writes for billing: the ledger, reserve-then-settle of gateway requests, usage records.

Concurrency lives in SQL: a reservation is a conditional ``UPDATE … WHERE balance - reserved >= x``
(and the same on the key's spend window) so two requests can never both spend the last dollar;
settlement releases the hold and charges the real cost in one transaction, keyed by the
generation id so it happens once however often it is retried.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Organization
from billing.models import (
    CreditAccount,
    Feedback,
    KeySpendWindow,
    LedgerEntry,
    LedgerKind,
    Reservation,
    ReservationState,
    UsageRecord,
)
from billing.windows import window_start
from routerhub.errors import InsufficientCredits, KeyLimitReached, NotFound
from routerhub.money import ZERO, money, money_str

logger = logging.getLogger(__name__)

RESERVATION_TTL = timedelta(minutes=15)


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
    account.balance += amount
    if kind == LedgerKind.TOPUP:
        account.total_purchased += amount
    account.save(update_fields=["balance", "total_purchased", "updated_at"])
    return LedgerEntry.objects.create(
        organization=organization,
        kind=kind,
        amount=amount,
        balance_after=account.balance,
        idempotency_key=idempotency_key,
        description=description[:300],
        reference=reference[:120],
    )


@dataclass(frozen=True)
class ReservationRequest:
    organization_id: int
    generation_id: str
    amount: Decimal
    key_id: int | None = None
    key_limit: Decimal | None = None
    key_limit_reset: str | None = None


def _reserve_key_window(request: ReservationRequest, now: datetime) -> datetime | None:
    """Hold ``amount`` inside the key's limit window, resetting the window when it rolled over."""
    assert request.key_id is not None and request.key_limit is not None
    current = window_start(request.key_limit_reset, now)
    KeySpendWindow.objects.get_or_create(key_id=request.key_id, defaults={"window_start": current})
    window = KeySpendWindow.objects.select_for_update().get(key_id=request.key_id)
    if window.window_start != current:
        # The window rolled: spend and holds of the old window no longer count against this one.
        window.window_start, window.spent, window.reserved = current, ZERO, ZERO
    if window.spent + window.reserved + request.amount > request.key_limit:
        raise KeyLimitReached(
            "This key has reached its credit limit for the current window.",
            metadata={
                "limit": money_str(request.key_limit),
                "remaining": money_str(
                    max(ZERO, request.key_limit - window.spent - window.reserved)
                ),
                "needed": money_str(request.amount),
                "reset": request.key_limit_reset,
            },
        )
    window.reserved += request.amount
    window.save()
    return current


def credits_reserve(request: ReservationRequest) -> Reservation:
    """Hold the maximum possible cost of a request before it is forwarded.

    Raises ``InsufficientCredits`` (402) or ``KeyLimitReached`` (403); on either nothing is held.
    """
    amount = money(request.amount)
    now = timezone.now()
    with transaction.atomic():
        held = CreditAccount.objects.filter(
            organization_id=request.organization_id,
            balance__gte=F("reserved") + amount,
        ).update(reserved=F("reserved") + amount)
        if not held:
            account = CreditAccount.objects.filter(organization_id=request.organization_id).first()
            available = ZERO if account is None else account.balance - account.reserved
            raise InsufficientCredits(
                "Insufficient credits for this request; add credits or lower max_tokens.",
                metadata={
                    "available": money_str(max(ZERO, available)),
                    "needed": money_str(amount),
                },
            )
        key_window = None
        if request.key_id is not None and request.key_limit is not None:
            key_window = _reserve_key_window(request, now)
        return Reservation.objects.create(
            organization_id=request.organization_id,
            generation_id=request.generation_id,
            key_id=request.key_id,
            amount=amount,
            key_window_start=key_window,
            expires_at=now + RESERVATION_TTL,
        )


async def credits_reserve_async(request: ReservationRequest) -> Reservation:
    return await sync_to_async(credits_reserve, thread_sensitive=False)(request)


@dataclass
class UsageDraft:
    """Everything the gateway knows about a finished request; JSON-serialisable for the outbox."""

    generation_id: str
    organization_id: int
    key_id: int | None
    status: str
    cost: Decimal = ZERO
    model: str = ""
    requested_model: str = ""
    provider: str = ""
    router: str = ""
    router_version: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    latency_ms: int | None = None
    ttft_ms: int | None = None
    error_type: str = ""
    streamed: bool = False
    is_byok: bool = False
    prompt: str = ""
    created_at: datetime = field(default_factory=timezone.now)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost"] = money_str(self.cost)
        data["created_at"] = self.created_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsageDraft:
        data = dict(data)
        data["cost"] = Decimal(data["cost"])
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        return cls(**data)


def _release(reservation: Reservation, cost: Decimal) -> None:
    CreditAccount.objects.filter(organization_id=reservation.organization_id).update(
        reserved=F("reserved") - reservation.amount
    )
    if reservation.key_id is not None and reservation.key_window_start is not None:
        # Only the window the hold was taken in; a rolled window was reset without it.
        KeySpendWindow.objects.filter(
            key_id=reservation.key_id, window_start=reservation.key_window_start
        ).update(reserved=F("reserved") - reservation.amount, spent=F("spent") + cost)
    reservation.state = ReservationState.SETTLED if cost else ReservationState.RELEASED
    reservation.save(update_fields=["state"])


def usage_settle(draft: UsageDraft) -> UsageRecord:
    """Write the usage record, charge its cost and release the hold, exactly once per generation."""
    cost = money(draft.cost)
    with transaction.atomic():
        existing = UsageRecord.objects.filter(generation_id=draft.generation_id).first()
        if existing is not None:
            return existing
        record = UsageRecord.objects.create(
            organization_id=draft.organization_id,
            generation_id=draft.generation_id,
            key_id=draft.key_id,
            model=draft.model,
            requested_model=draft.requested_model,
            provider=draft.provider,
            router=draft.router,
            router_version=draft.router_version,
            prompt_tokens=draft.prompt_tokens,
            completion_tokens=draft.completion_tokens,
            cached_tokens=draft.cached_tokens,
            reasoning_tokens=draft.reasoning_tokens,
            cost=cost,
            latency_ms=draft.latency_ms,
            ttft_ms=draft.ttft_ms,
            status=draft.status,
            error_type=draft.error_type,
            streamed=draft.streamed,
            is_byok=draft.is_byok,
            prompt=draft.prompt,
            created_at=draft.created_at,
        )
        reservation = (
            Reservation.objects.select_for_update()
            .filter(generation_id=draft.generation_id, state=ReservationState.HELD)
            .first()
        )
        if reservation is not None:
            _release(reservation, cost)
        if cost > 0:
            _charge_usage(draft, cost)
        return record


def _charge_usage(draft: UsageDraft, cost: Decimal) -> None:
    charged = CreditAccount.objects.filter(
        organization_id=draft.organization_id, balance__gte=cost
    ).update(balance=F("balance") - cost, total_used=F("total_used") + cost)
    if not charged:
        # Cannot happen while cost <= the reservation; if it does, the invariant is broken
        # and must be loud rather than silently writing a negative balance.
        raise RuntimeError(f"settlement of {draft.generation_id} exceeds the balance")
    balance = CreditAccount.objects.values_list("balance", flat=True).get(
        organization_id=draft.organization_id
    )
    LedgerEntry.objects.create(
        organization_id=draft.organization_id,
        kind=LedgerKind.USAGE,
        amount=-cost,
        balance_after=balance,
        idempotency_key=f"usage:{draft.generation_id}",
        description=f"{draft.model or draft.requested_model} via {draft.provider or '-'}",
        reference=draft.generation_id,
    )


async def usage_settle_async(draft: UsageDraft) -> UsageRecord:
    return await sync_to_async(usage_settle, thread_sensitive=False)(draft)


def reservations_sweep(*, now: datetime | None = None) -> int:
    """Release holds whose request never settled (its worker died); returns how many."""
    now = now or timezone.now()
    released = 0
    for generation_id in Reservation.objects.filter(
        state=ReservationState.HELD, expires_at__lt=now
    ).values_list("generation_id", flat=True)[:1000]:
        with transaction.atomic():
            reservation = (
                Reservation.objects.select_for_update()
                .filter(generation_id=generation_id, state=ReservationState.HELD)
                .first()
            )
            if reservation is None:
                continue
            _release(reservation, ZERO)
            released += 1
    if released:
        logger.warning("released %d expired credit reservations", released)
    return released


def feedback_record(
    *, organization_id: int, generation_id: str, score: float, comment: str = "", key_id: int | None
) -> Feedback:
    """Store (or replace) the feedback on a served request of this organization."""
    usage = UsageRecord.objects.filter(
        organization_id=organization_id, generation_id=generation_id
    ).first()
    if usage is None:
        raise NotFound(
            f"No generation {generation_id} in this organization.", param="generation_id"
        )
    feedback, _ = Feedback.objects.update_or_create(
        usage=usage,
        defaults={
            "organization_id": organization_id,
            "score": score,
            "comment": comment,
            "key_id": key_id,
        },
    )
    return feedback
