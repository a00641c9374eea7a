"""The gateway's one door into billing: a request's money, from its hold to the ledger.

``routing.gateway`` imports billing only through this module. A request meets billing in four
calls, in this order, and each leads by plain function calls to where the work happens:

1. ``hold`` — before anything is forwarded, reserve the most the request can cost (sized with
   ``reservation_amount``) → ``billing.services.credits_reserve_async``, whose strategy (one SQL
   statement on the gateway's own connections, or an ORM transaction for keys with a credit
   limit) is documented once, at ``billing.services._one_statement``. 402/403 when refused.
2. ``price`` — when the provider has answered, the charge: the list price of the counted tokens
   (``billing.pricing.usage_cost``). It is never capped at the hold: a charge above the hold is
   flagged ``over_hold`` and charged in full. Money policy has exactly one other rule, applied
   where the balance is locked: settlement takes a charge above the balance down to a zero
   balance, never below, and flags it ``shortfall`` (``billing.settlement._charges``).
3. ``record`` — exactly once per hold, whatever happened (success, failure, disconnect): hand
   the finished draft over → ``billing.outbox.usage_record_async`` (``draft_encode``, appended to
   the usage stream) → a settler's ``usage_settle_batch`` (``billing.settlement``): the usage
   record, the ledger entry ``usage:<generation id>``, the balance, the hold released.
4. ``close`` — when a gateway worker stops: finish its hand-overs and close its connections.

Several provider calls per request (issue 17's pipelines, ``routing.gateway.pipeline``): the
request holds once, with the sum of its calls' worst cases. Each provider call is priced with
``price`` on a child draft of its own (never recorded by itself), and added to the request's
draft as one ``UsageDraft.steps`` entry (``billing.drafts.STEP_FIELDS``); the request's draft
carries their total as its cost and is recorded once, as any request's. Settlement writes the
steps as ``UsageStep`` child records in the same transaction as the usage record, whose charge
is the one ledger entry: records, steps, ledger and balance commit together, and the key's
spend window counts the charge through the hold as for any request.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone
from prometheus_client import Counter

from accounts.models import ApiKey
from billing.drafts import UsageDraft
from billing.models import UsageFlag
from billing.outbox import usage_outbox_flush, usage_record_async
from billing.pg_async import pg_close
from billing.pricing import CacheCounts, TokenPrices, reservation_amount, usage_cost
from billing.selectors import key_limit_windows
from billing.services import ReservationRequest, credits_available_async, credits_reserve_async
from billing.window_spend import WindowSpend, window_spend
from billing.windows import LimitBound, WindowLeft, window_end, window_tightest
from routerhub.money import ZERO

__all__ = [
    "Payer",
    "TokenCounts",
    "TokenPrices",
    "Unheld",
    "UsageDraft",
    "UsageFlag",
    "WindowSpend",
    "close",
    "generation_id_new",
    "hold",
    "limit_window",
    "price",
    "record",
    "reservation_amount",
]

logger = logging.getLogger(__name__)


class Payer(Protocol):
    """Who pays for a request: an API key of an organization (``accounts.keys.AuthenticatedKey``)."""

    @property
    def id(self) -> int: ...
    @property
    def organization_id(self) -> int: ...
    @property
    def limit(self) -> Decimal | None: ...
    @property
    def limit_reset(self) -> str | None: ...
    @property
    def ancestors(self) -> tuple[LimitBound, ...]: ...


class TokenCounts(Protocol):
    """The tokens one provider call is billed for (``routing.providers.base.Usage``)."""

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...
    @property
    def reasoning_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...
    @property
    def cache_write_1h_tokens(self) -> int: ...
    @property
    def parts(self) -> Sequence[TokenCounts]: ...
    @property
    def tier_prompt_tokens(self) -> int: ...


def generation_id_new() -> str:
    """A request's generation id: the key of its hold, its usage record and its ledger entry."""
    return f"gen-{int(time.time())}-{secrets.token_urlsafe(15)}"


async def hold(payer: Payer, generation_id: str, amount: Decimal) -> None:
    """Hold ``amount`` of the organization's credits (and of the key's limit, and of the limits
    of the keys it was made from: ``billing.key_windows``) for one request."""
    await credits_reserve_async(
        ReservationRequest(
            organization_id=payer.organization_id,
            generation_id=generation_id,
            amount=amount,
            key_id=payer.id,
            key_limit=payer.limit,
            key_limit_reset=payer.limit_reset,
            ancestors=payer.ancestors,
        )
    )


@dataclass(frozen=True, slots=True)
class Unheld:
    """What a payer can still hold beyond every hold: ``amount``, and whether its key's limit
    windows (its own or an ancestor's) bound it rather than the organization's credits."""

    amount: Decimal
    key_limited: bool
    # When ``key_limited``: when the tightest window (``amount``'s) ends (None: it never resets).
    reset_at: datetime | None = None
    # The payer's limit windows in the order a hold checks them (key id), each with its key.
    windows: tuple[WindowLeft, ...] = ()

    def refused_by(self, amount: Decimal) -> WindowLeft | None:
        """The window a hold of ``amount`` more would be refused by, as ``key_windows_reserve``
        picks it: the first in key id order that leaves less, not the tightest (an ancestor
        leaving 0.5 refuses 0.6 before the key's own window leaving 0.1 is checked)."""
        return next((window for window in self.windows if window.remaining < amount), None)


async def unheld(payer: Payer) -> Unheld:
    """What a charge above the payer's hold can still take (``over_hold``): the least of its
    organization's credits beyond every hold (beyond them settlement would cap it:
    ``shortfall``) and what its key's limit windows leave, its own and its ancestors' (the
    windows a hold is refused by, ``billing.key_windows``; read as ``GET /api/v1/key`` reads
    them, ``billing.selectors.key_limit_windows``)."""
    credits = await credits_available_async(payer.organization_id)
    if payer.limit is None and not payer.ancestors:
        return Unheld(credits, key_limited=False)
    windows = await sync_to_async(_key_windows_left, thread_sensitive=False)(payer.id)
    now = timezone.now()
    tightest = window_tightest(windows, now)
    if tightest is None or tightest.remaining >= credits:
        return Unheld(credits, key_limited=False)
    end = window_end(tightest.reset, now)
    return Unheld(tightest.remaining, key_limited=True, reset_at=end, windows=tuple(windows))


def _key_windows_left(key_id: int) -> list[WindowLeft]:
    key = ApiKey.objects.filter(pk=key_id).first()
    return [] if key is None else key_limit_windows(key=key, now=timezone.now())


def limit_window(payer: Payer) -> WindowSpend | None:
    """The fullest of the payer's limit windows (the largest share used; its own and its
    ancestors', ``billing.key_windows``: a hold is refused by whichever fills first), as this
    process's last holds saw them (``billing.window_spend``): memory only, for budget-aware
    routing. None when neither the payer nor an ancestor has a limit."""
    windows = [
        window_spend(bound.key_id, bound.limit, bound.reset, ancestor=True)
        for bound in payer.ancestors
    ]
    if payer.limit is not None:
        windows.append(window_spend(payer.id, payer.limit, payer.limit_reset))
    # Ties go to the key's own window (last, and max keeps the first of equals: reversed).
    return max(reversed(windows), key=lambda w: w.share, default=None)


def price(
    draft: UsageDraft,
    prices: TokenPrices,
    usage: TokenCounts,
    *,
    is_byok: bool,
    held: Decimal,
    own_host: bool = False,
) -> Decimal:
    """Charge ``usage`` at ``prices`` on ``draft`` (its cost and token counts) and return the cost.

    The list price, never capped at the hold ``held``: the hold bounds what was sent and asked
    for, and a provider may count more (hidden reasoning, a tenant's own host). Such a charge is
    flagged ``over_hold`` and logged; settlement takes it as far as the balance goes.
    An organization's own host (``own_host``) has its cache reads priced as prompt: the fee is
    on list price, and nothing tells its real cache hits from claimed ones; the record keeps
    its counts (before, they were zeroed: hidden from the client and the record). Its price
    tier is chosen from its prompt estimate where that is larger (``tier_prompt_tokens``).
    """
    # Calls summed (``parts``) are priced each at its own tier: two 120k-token prompts are two
    # calls under a 200k threshold, not one over it (before, their sum's tier: twice the hold).
    cost = sum(
        (_call_cost(prices, call, is_byok, own_host) for call in usage.parts or (usage,)), ZERO
    )
    if cost > held:
        logger.warning(
            "generation %s costs %s, above its hold %s; charged in full (flag over_hold)",
            draft.generation_id,
            cost,
            held,
        )
        draft.flag(UsageFlag.OVER_HOLD)
        _far_over_hold(draft, cost, held)
    draft.is_byok, draft.cost = is_byok, cost
    draft.prompt_tokens, draft.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    draft.cached_tokens, draft.reasoning_tokens = usage.cached_tokens, usage.reasoning_tokens
    draft.cache_write_tokens = usage.cache_write_tokens
    return cost


def _call_cost(prices: TokenPrices, usage: TokenCounts, is_byok: bool, own_host: bool) -> Decimal:
    # The tier from the larger of the count and ``tier_prompt_tokens`` (an own host's estimate):
    # a host's count under a threshold its prompt is over does not choose the cheaper tier.
    tier = prices.at(max(usage.prompt_tokens, usage.tier_prompt_tokens))
    return usage_cost(
        tier,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=0 if own_host else usage.cached_tokens,
        cache=CacheCounts(write=usage.cache_write_tokens, write_1h=usage.cache_write_1h_tokens),
        is_byok=is_byok,
    )


# Charges far above their holds: a provider counting what the hold did not foresee (an image
# formula, hidden reasoning), which settlement may cap at the balance — the platform pays the rest.
FAR_OVER_HOLD = Counter(
    "routerhub_charges_far_over_hold",
    "Charges at least BILLING_OVER_HOLD_ALERT_MULTIPLE times their hold, by provider.",
    ["provider"],
)


def _far_over_hold(draft: UsageDraft, cost: Decimal, held: Decimal) -> None:
    """Count and log a charge many times its hold: charged all the same (the tokens are spent),
    but a hold that far off is a formula to fix."""
    if cost < held * settings.BILLING_OVER_HOLD_ALERT_MULTIPLE:
        return
    FAR_OVER_HOLD.labels(provider=draft.provider or "unknown").inc()
    logger.error(
        "generation %s (%s via %s) costs %s, %.1fx its hold %s: the hold misjudges it",
        draft.generation_id,
        draft.model,
        draft.provider,
        cost,
        cost / held if held else float("inf"),
        held,
    )


async def record(draft: UsageDraft, *, alone: bool = False) -> None:
    """Hand a finished request's draft over to be settled: call it exactly once per hold.
    ``alone``: no other request is in flight in this process, so the hand-over need not wait
    for others' drafts to share its write (``billing.outbox``).

    Durable before it returns (the outbox's Redis stream, or settled directly without Redis).
    A failure is logged, not raised: the reservation sweep then settles the hold. Shielded: a
    caller cancelled during the hand-over (a server's shutdown cancelling its handlers) stops
    waiting, but the hand-over goes on, and ``close`` waits for it. Before, it could stop midway
    (a free request's hold marked free but its draft never appended: no usage record), or the
    worker exit with its append unwritten."""
    hand_over = asyncio.ensure_future(_hand_over(draft, alone))
    _handing_over.add(hand_over)
    hand_over.add_done_callback(_handing_over.discard)
    await asyncio.shield(hand_over)


# The hand-overs under way (strong references: a task only the loop refers to may be collected).
_handing_over: set[asyncio.Future[None]] = set()


async def _hand_over(draft: UsageDraft, alone: bool) -> None:
    try:
        await usage_record_async(draft, coalesce=not alone)
    except Exception:
        logger.exception(
            "settlement of %s failed; the reservation sweep will settle its hold",
            draft.generation_id,
        )


async def settled_within(settling: set[asyncio.Future[None]], timeout: float, what: str) -> None:
    """At shutdown: wait at most ``timeout`` s for ``settling`` (handlers or hand-overs still
    settling); past it, warn and go on — the reservation sweep charges their holds later."""
    if not settling:
        return
    _, pending = await asyncio.wait(settling, timeout=timeout)
    if pending:
        logger.warning(
            "shutdown: %d %s still settling after %.1f s (GATEWAY_SHUTDOWN_DRAIN_SECONDS); "
            "going on, the reservation sweep settles their holds",
            len(pending),
            what,
            timeout,
        )


async def close(timeout: float = 5.0) -> None:
    """A gateway worker is stopping: finish this loop's hand-overs (those of handlers cancelled
    midway too; at most ``timeout`` s), then close its billing connections."""
    loop = asyncio.get_running_loop()
    # A copy first (one C call under the GIL): other loops' threads (another server in the
    # process) add and discard hand-overs meanwhile; iterating the set itself could raise
    # "Set changed size during iteration" and skip the drain (as in ``ttl_cache``).
    mine = {task for task in set(_handing_over) if task.get_loop() is loop}
    await settled_within(mine, timeout, "usage hand-over(s)")
    try:
        await usage_outbox_flush()
    finally:
        pg_close()
