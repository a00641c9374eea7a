"""OpenRouter's ``{"data": …}`` shapes of the key, the credits and a generation.

RouterHub's own endpoints on OpenRouter's paths (``GET /api/v1/key``, ``/api/v1/credits``,
``/api/v1/generation``) keep their API.md fields and add OpenRouter's under ``data``, so a
client written for either reads the same answer; ``GET /api/v1/auth/key`` (OpenRouter's older
path, not one of RouterHub's) answers only the envelope. Amounts are numbers in USD, as
OpenRouter gives them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from accounts.models import ApiKey, KeyScope
from billing.models import CreditAccount, UsageRecord
from billing.selectors import KeyUsage


def _number(amount: Decimal | None) -> float | None:
    return None if amount is None else float(amount)


def key_data(key: ApiKey, usage: KeyUsage, *, is_free_tier: bool) -> dict[str, Any]:
    """The key as OpenRouter's ``GET /api/v1/key`` gives it. ``rate_limit`` is the key's
    requests per minute (-1: no per-key limit)."""
    return {
        "label": key.name or key.prefix,
        "usage": _number(usage.usage),
        "usage_daily": _number(usage.usage_daily),
        "usage_weekly": _number(usage.usage_weekly),
        "usage_monthly": _number(usage.usage_monthly),
        "limit": _number(key.limit),
        "limit_remaining": _number(usage.limit_remaining),
        "limit_reset": key.limit_reset,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "is_free_tier": is_free_tier,
        "is_provisioning_key": key.scope == KeyScope.MANAGE,
        "is_management_key": key.scope == KeyScope.MANAGE,
        "include_byok_in_limit": True,
        "rate_limit": {"requests": key.rpm if key.rpm is not None else -1, "interval": "1m"},
    }


def is_free_tier(account: CreditAccount | None) -> bool:
    """OpenRouter's free tier: an account that never bought credits."""
    return account is None or account.total_purchased <= 0


def credits_data(account: CreditAccount) -> dict[str, Any]:
    """``total_credits`` less ``total_usage`` is the balance (granted credits count as bought)."""
    return {
        "total_credits": float(account.balance + account.total_used),
        "total_usage": float(account.total_used),
    }


def generation_data(record: UsageRecord) -> dict[str, Any]:
    """A generation as OpenRouter's ``GET /api/v1/generation`` gives it (RouterHub counts
    tokens once: the native counts are the same numbers)."""
    return {
        "id": record.generation_id,
        "model": record.model,
        "provider_name": record.provider,
        "created_at": record.created_at.isoformat(),
        "total_cost": float(record.cost),
        "usage": float(record.cost),
        "is_byok": record.is_byok,
        "streamed": record.streamed,
        "cancelled": record.status == "cancelled",
        "latency": record.ttft_ms,
        "generation_time": record.latency_ms,
        "tokens_prompt": record.prompt_tokens,
        "tokens_completion": record.completion_tokens,
        "native_tokens_prompt": record.prompt_tokens,
        "native_tokens_completion": record.completion_tokens,
        "native_tokens_reasoning": record.reasoning_tokens,
        "native_tokens_cached": record.cached_tokens,
    }


_float = serializers.FloatField
KeyData = inline_serializer(
    "OpenRouterKey",
    {
        "label": serializers.CharField(),
        **{
            name: _float(allow_null=True)
            for name in (
                "usage",
                "usage_daily",
                "usage_weekly",
                "usage_monthly",
                "limit",
                "limit_remaining",
            )
        },
        "limit_reset": serializers.CharField(allow_null=True),
        "expires_at": serializers.DateTimeField(allow_null=True),
        "is_free_tier": serializers.BooleanField(),
        "is_provisioning_key": serializers.BooleanField(),
        "is_management_key": serializers.BooleanField(),
        "include_byok_in_limit": serializers.BooleanField(),
        "rate_limit": inline_serializer(
            "OpenRouterRateLimit",
            {"requests": serializers.IntegerField(), "interval": serializers.CharField()},
        ),
    },
    help_text="OpenRouter's shape of the key (amounts in USD as numbers).",
)
CreditsData = inline_serializer(
    "OpenRouterCredits",
    {"total_credits": _float(), "total_usage": _float()},
    help_text="OpenRouter's shape: total_credits - total_usage is the balance.",
)
GenerationData = inline_serializer(
    "OpenRouterGeneration",
    {
        "id": serializers.CharField(),
        "model": serializers.CharField(),
        "provider_name": serializers.CharField(),
        "created_at": serializers.DateTimeField(),
        "total_cost": _float(),
        "usage": _float(),
        "is_byok": serializers.BooleanField(),
        "streamed": serializers.BooleanField(),
        "cancelled": serializers.BooleanField(),
        "latency": serializers.IntegerField(allow_null=True),
        "generation_time": serializers.IntegerField(allow_null=True),
        **{
            name: serializers.IntegerField()
            for name in (
                "tokens_prompt",
                "tokens_completion",
                "native_tokens_prompt",
                "native_tokens_completion",
                "native_tokens_reasoning",
                "native_tokens_cached",
            )
        },
    },
    help_text="OpenRouter's shape of the generation.",
)
