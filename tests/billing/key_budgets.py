"""Keys with budgets for the hierarchical-budget tests (``billing.key_windows``): a management
key a person made, keys it made, and holds and settlements as the gateway makes them (each hold
goes through ``metering.hold``'s request with the key as it authenticates)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from accounts.keys import AuthenticatedKey, key_authenticate, key_cache_clear
from accounts.models import ApiKey, KeyScope, Organization
from billing import metering
from billing.drafts import UsageDraft
from billing.models import KeySpendWindow
from billing.services import ReservationRequest, credits_reserve
from billing.settlement import usage_settle
from routerhub.errors import KeyLimitReached
from tests.factories import funded_organization_make, key_row_make


def budget_organization_make() -> Organization:
    """An organization with credits to spare: only the keys' limits refuse a hold."""
    return funded_organization_make("100")


def manage_key_make(organization: Organization, **fields: Any) -> tuple[str, ApiKey]:
    """A management key a person made."""
    return key_row_make(organization, KeyScope.MANAGE, **fields)


def lifetime_key_make(limit: str = "1") -> tuple[str, ApiKey]:
    """A key a person made whose own limit never resets (``limit_reset`` null)."""
    return key_row_make(budget_organization_make(), limit=Decimal(limit), limit_reset=None)


def key_hold(plaintext: str, amount: str) -> str:
    """Hold ``amount`` for a request of the key as it authenticates (``metering.hold``'s
    request, on this test's connection); its generation id."""
    key_cache_clear()
    return key_reserve(key_authenticate(plaintext), amount)


def key_reserve(key: AuthenticatedKey, amount: str) -> str:
    generation_id = metering.generation_id_new()
    credits_reserve(ReservationRequest(
        organization_id=key.organization_id, generation_id=generation_id, amount=Decimal(amount),
        key_id=key.id, key_limit=key.limit, key_limit_reset=key.limit_reset,
        ancestors=key.ancestors,
    ))  # fmt: skip
    return generation_id


def key_settle(plaintext: str, generation_id: str, cost: str) -> None:
    key = key_authenticate(plaintext)
    usage_settle(UsageDraft(generation_id=generation_id, organization_id=key.organization_id,
                            key_id=key.id, status="succeeded", cost=Decimal(cost)))  # fmt: skip


def key_refusal(plaintext: str, amount: str) -> dict[str, Any]:
    """The refusal of a hold of ``amount``: its message and metadata."""
    with pytest.raises(KeyLimitReached) as refused:
        key_hold(plaintext, amount)
    return {"message": refused.value.args[0], **refused.value.metadata}


def key_window(key: ApiKey) -> tuple[Decimal, Decimal]:
    """The key's own spend window: (spent, reserved)."""
    window = KeySpendWindow.objects.get(key=key)
    return window.spent, window.reserved
