"""Prices → cost. Pure functions on Decimal; the gateway and billing use only these."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from routerhub.money import ZERO, money


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """USD per token (not per million) of one endpoint."""

    prompt: Decimal
    completion: Decimal
    cached_prompt: Decimal | None = None


def usage_cost(
    prices: TokenPrices,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    is_byok: bool = False,
) -> Decimal:
    """Cost of one request. ``completion_tokens`` already includes reasoning tokens (OpenAI's
    convention; adapters add a provider's separately reported thinking tokens into it).
    Bring-your-own-key requests pay the provider directly and RouterHub only its fee on the
    equivalent list price."""
    cached = min(max(cached_tokens, 0), prompt_tokens)
    cached_price = prices.prompt if prices.cached_prompt is None else prices.cached_prompt
    cost = (
        (prompt_tokens - cached) * prices.prompt
        + cached * cached_price
        + completion_tokens * prices.completion
    )
    if is_byok:
        cost = cost * settings.BYOK_FEE_RATE
    return money(cost)


def reservation_amount(
    prices: TokenPrices, *, prompt_tokens: int, max_output_tokens: int
) -> Decimal:
    """The most a request can cost: every prompt token uncached, every allowed output token used."""
    return money(prompt_tokens * prices.prompt + max_output_tokens * prices.completion)


def topup_fee(amount: Decimal) -> Decimal:
    """Platform fee added on top of a credit purchase (OpenRouter charges 5.5%)."""
    fee = money(amount * settings.TOPUP_FEE_RATE)
    return max(fee, settings.TOPUP_FEE_MINIMUM) if amount > ZERO else ZERO
