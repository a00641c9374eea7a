"""Prices → cost. Pure functions on Decimal; the gateway and billing use only these."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from routerhub.money import ZERO, money


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """USD per token (not per million) of one endpoint. ``long_context``: the prices of a
    request whose prompt is over ``long_context_threshold`` tokens (Gemini 2.5 Pro's prompts
    over 200k), which price the whole request, prompt and completion, as the provider bills."""

    prompt: Decimal
    completion: Decimal
    cached_prompt: Decimal | None = None
    long_context: TokenPrices | None = None
    long_context_threshold: int = 0

    def at(self, prompt_tokens: int) -> TokenPrices:
        """The prices of a request of ``prompt_tokens`` (cached ones included)."""
        if self.long_context is not None and prompt_tokens > self.long_context_threshold:
            return self.long_context
        return self


# Prompt-cache writes cost a multiple of the prompt price (Anthropic's "Prompt caching"
# pricing: 1.25x for the 5-minute cache, 2x for the 1-hour one); the catalog has no write price.
CACHE_WRITE_MULTIPLIER = {"5m": Decimal("1.25"), "1h": Decimal("2")}


@dataclass(frozen=True, slots=True)
class CacheCounts:
    """The prompt tokens written to a provider's prompt cache (included in the prompt count);
    ``write_1h`` is the part of ``write`` cached for an hour."""

    write: int = 0
    write_1h: int = 0


def usage_cost(
    prices: TokenPrices,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    cache: CacheCounts = CacheCounts(),
    is_byok: bool = False,
) -> Decimal:
    """Cost of one request. ``completion_tokens`` already includes reasoning tokens (OpenAI's
    convention; adapters add a provider's separately reported thinking tokens into it).
    Cache reads (``cached_tokens``) cost the endpoint's ``cached_prompt`` price, cache writes
    (``cache``) the prompt price times ``CACHE_WRITE_MULTIPLIER``.
    Bring-your-own-key requests pay the provider directly and RouterHub only its fee on the
    equivalent list price."""
    prices = prices.at(prompt_tokens)
    cached = min(max(cached_tokens, 0), prompt_tokens)
    written = min(max(cache.write, 0), prompt_tokens - cached)
    hour = min(max(cache.write_1h, 0), written)
    cached_price = prices.prompt if prices.cached_prompt is None else prices.cached_prompt
    cost = (
        (prompt_tokens - cached - written) * prices.prompt
        + cached * cached_price
        + (written - hour) * prices.prompt * CACHE_WRITE_MULTIPLIER["5m"]
        + hour * prices.prompt * CACHE_WRITE_MULTIPLIER["1h"]
        + completion_tokens * prices.completion
    )
    if is_byok:
        cost = cost * settings.BYOK_FEE_RATE
    return money(cost)


def reservation_amount(
    prices: TokenPrices, *, prompt_tokens: int, max_output_tokens: int, cache_ttl: str | None = None
) -> Decimal:
    """The most a request can cost: every prompt token uncached, every allowed output token used;
    with prompt-caching marks (``cache_ttl``, the longest asked for) every prompt token written;
    at the long-context prices when the prompt's bound is over their threshold."""
    prices = prices.at(prompt_tokens)
    prompt_price = prices.prompt * CACHE_WRITE_MULTIPLIER.get(cache_ttl or "", Decimal(1))
    return money(prompt_tokens * prompt_price + max_output_tokens * prices.completion)


def topup_fee(amount: Decimal) -> Decimal:
    """Platform fee added on top of a credit purchase (OpenRouter charges 5.5%)."""
    fee = money(amount * settings.TOPUP_FEE_RATE)
    return max(fee, settings.TOPUP_FEE_MINIMUM) if amount > ZERO else ZERO
