"""A hierarchical budget: a key a management key made spends against the limit of every key up
its lineage, not only its own (``billing.key_windows``).

The finding: a management key with a 1 USD limit could mint keys of 1 USD each (no more than it
has, so ``key_lineage.grant_check`` allowed them) and, through them, spend 1 USD per key. Each
hold here goes through the gateway's door (``metering.hold``) with the key as it authenticates.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import key_lineage
from accounts.keys import AuthenticatedKey, key_authenticate, key_cache_clear
from accounts.models import ApiKey, KeyScope
from accounts.services import api_key_update
from billing import metering
from billing.drafts import UsageDraft
from billing.models import KeySpendWindow, Reservation
from billing.services import (
    ReservationRequest,
    credits_reserve,
    ledger_post,
    reservations_sweep,
)
from billing.settlement import usage_settle
from routerhub.errors import KeyLimitReached
from tests.factories import key_make, organization_make

pytestmark = pytest.mark.django_db


def _organization() -> Any:
    organization = organization_make()
    ledger_post(organization=organization, kind="promotion", amount=Decimal("100"),
                idempotency_key=f"grant:{organization.pk}")  # fmt: skip
    return organization


def _root(organization: Any, **fields: Any) -> tuple[str, ApiKey]:
    """A management key a person made."""
    plaintext = key_make(organization, KeyScope.MANAGE, **fields)
    return plaintext, ApiKey.objects.get(prefix=plaintext[:16])


def _child(parent: ApiKey, **requested: Any) -> tuple[str, ApiKey]:
    """A key ``parent`` made through the management API's service."""
    created = key_lineage.api_key_create_bounded(
        acting_key_id=parent.pk,
        organization=parent.organization,
        created_by=parent.created_by,
        created_by_role=parent.created_by_role,
        requested={"name": f"child {uuid.uuid4().hex[:6]}", **requested},
    )
    return created.plaintext, created.key


def _hold(plaintext: str, amount: str) -> str:
    """Hold ``amount`` for a request of the key as it authenticates (``metering.hold``'s
    request, on this test's connection); its generation id."""
    key_cache_clear()
    return _reserve(key_authenticate(plaintext), amount)


def _reserve(key: AuthenticatedKey, amount: str) -> str:
    generation_id = metering.generation_id_new()
    credits_reserve(ReservationRequest(
        organization_id=key.organization_id, generation_id=generation_id, amount=Decimal(amount),
        key_id=key.id, key_limit=key.limit, key_limit_reset=key.limit_reset,
        ancestors=key.ancestors,
    ))  # fmt: skip
    return generation_id


def _settle(plaintext: str, generation_id: str, cost: str) -> None:
    key = key_authenticate(plaintext)
    usage_settle(UsageDraft(generation_id=generation_id, organization_id=key.organization_id,
                            key_id=key.id, status="succeeded", cost=Decimal(cost)))  # fmt: skip


def _refused_by(plaintext: str, amount: str) -> dict[str, Any]:
    with pytest.raises(KeyLimitReached) as refused:
        _hold(plaintext, amount)
    return {"message": refused.value.args[0], **refused.value.metadata}


def _window(key: ApiKey) -> tuple[Decimal, Decimal]:
    window = KeySpendWindow.objects.get(key=key)
    return window.spent, window.reserved


def test_two_children_of_a_key_together_spend_no_more_than_its_limit() -> None:
    _, parent = _root(_organization(), limit=Decimal("1"), limit_reset="daily")
    first, _ = _child(parent)  # takes its parent's limit: 1 a day
    second, _ = _child(parent, limit=Decimal("1"), limit_reset="daily")

    held = _hold(first, "0.6")
    refused = _refused_by(second, "0.6")  # its own window is empty; its parent's is not

    assert refused["limited_by"].startswith(parent.prefix) and "limit" not in refused
    assert refused["remaining"] == "0.40000000"  # what it can spend, not the parent's limit
    assert parent.prefix in refused["message"] and "made from" in refused["message"]
    _settle(first, held, "0.5")
    assert _window(parent) == (Decimal("0.5"), 0)
    _refused_by(second, "0.6")
    _hold(second, "0.5")  # what is left of the parent's window
    assert _window(parent) == (Decimal("0.5"), Decimal("0.5"))
    _refused_by(first, "0.01")


def test_a_grandchild_spends_against_its_grandparent() -> None:
    _, grandparent = _root(_organization(), limit=Decimal("1"), limit_reset="weekly")
    _, parent = _child(grandparent, scope=KeyScope.MANAGE)
    grandchild, _ = _child(parent)
    sibling, _ = _child(grandparent)

    _hold(grandchild, "0.7")
    refused = _refused_by(sibling, "0.4")

    assert refused["limited_by"].startswith(grandparent.prefix)
    assert _window(grandparent) == (0, Decimal("0.7")) and _window(parent) == (0, Decimal("0.7"))


def test_the_ancestors_window_resetting_frees_its_children_up_to_their_own_limit() -> None:
    _, parent = _root(_organization(), limit=Decimal("0.5"), limit_reset="daily")
    child, child_row = _child(parent, limit=Decimal("0.5"), limit_reset="monthly")
    # A person with the role may grant more than the key that made it has (the dashboard).
    child_row = api_key_update(key=child_row, changes={"limit": Decimal("0.8")})
    _settle(child, _hold(child, "0.5"), "0.5")

    assert _refused_by(child, "0.1")["limited_by"].startswith(parent.prefix)
    # A day later the parent's daily window is a new one; the child's month is not over.
    KeySpendWindow.objects.filter(key=parent).update(
        window_start=timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
        - timedelta(days=1)
    )
    held = _hold(child, "0.1")
    # 0.5 spent + 0.1 held + 0.3 > 0.8, the child's own limit; 0.1 + 0.3 fit the parent's.
    own = _refused_by(child, "0.3")

    assert "limited_by" not in own and own["message"].startswith("This key has reached")
    assert _window(parent) == (0, Decimal("0.1")) and _window(child_row) == (
        Decimal("0.5"),
        Decimal("0.1"),
    )
    # A hold the sweep releases (its request failed before any answer) leaves both windows.
    Reservation.objects.filter(generation_id=held).update(
        state="free", expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert reservations_sweep() == 1
    assert _window(parent) == (0, 0) and _window(child_row) == (Decimal("0.5"), 0)


def test_a_key_a_person_made_holds_with_the_queries_it_always_did() -> None:
    """Performance-neutral for keys without a parent: no ancestor read when authenticating,
    and its hold locks its own window only (a child's: one more window, two queries)."""
    organization = _organization()
    plaintext = key_make(organization, limit=Decimal("1"), limit_reset="daily")
    _, parent = _root(organization, limit=Decimal("1"), limit_reset="daily")
    child, _ = _child(parent)
    key_cache_clear()

    with CaptureQueriesContext(connection) as person_auth:
        key = key_authenticate(plaintext)
    with CaptureQueriesContext(connection) as child_auth:
        child_key = key_authenticate(child)

    assert key.ancestors == () and len(child_auth) == len(person_auth) + 1
    assert [bound.key_id for bound in child_key.ancestors] == [parent.pk]
    windows = "billing_keyspendwindow"
    _reserve(key, "0.1")  # each window row exists from here on
    _reserve(child_key, "0.1")
    with CaptureQueriesContext(connection) as person_hold:
        _reserve(key, "0.1")
    with CaptureQueriesContext(connection) as child_hold:
        _reserve(child_key, "0.1")
    person_windows = [q for q in person_hold.captured_queries if windows in q["sql"]]
    child_windows = [q for q in child_hold.captured_queries if windows in q["sql"]]
    assert len(child_windows) == 2 * len(person_windows)
    assert len(child_hold) == len(person_hold) + len(person_windows)
