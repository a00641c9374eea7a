"""A bounded management key only narrows the keys it did not make, on every field; an earlier
expiry reaches a key being made under the key meanwhile; the Django admin does not move a key's
expiry or organization around the lineage rules (``accounts.key_lineage``, the second review).

The attack: a management key limited to 10 USD, with no expiry, models or rate limits of its own,
dropped another key's expiry, model allow-list or rpm (200 on the old code: the per-field check
only held where the acting key was bounded on that very field).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from accounts import key_lineage
from accounts.models import ApiKey
from tests.db_locks import (
    backend_pid,
    pause_after_first_row_lock,
    race_behind,
    scans_in_disk_order,
)
from tests.factories import Tenants, child_key_make, key_row_make
from tests.security.test_key_lineage import SOON, creates_paused, management_key, refused
from tests.security.test_key_lineage_revoke import operator_client

# field → (the acting key's only bound, on another field; the other key's bound; the widening).
WIDENINGS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "expires_at": ({"limit": "10"}, {"expires_at": SOON}, {"expires_at": None}),
    "allowed_models": ({"limit": "10"}, {"allowed_models": ["test/free"]}, {"allowed_models": []}),
    "rpm": ({"limit": "10"}, {"rpm": 1}, {"rpm": None}),
    "tpm": ({"allowed_models": ["test/gpt"]}, {"tpm": 100}, {"tpm": 101}),
    "limit": ({"rpm": 100}, {"limit": "1"}, {"limit": None}),
    "limit_reset": (
        {"expires_at": SOON},
        {"limit": "1", "limit_reset": "monthly"},
        {"limit_reset": "daily"},
    ),
}


def when(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with an ``expires_at`` given as a timedelta made a time from now."""
    return {
        name: timezone.now() + value if isinstance(value, timedelta) else value
        for name, value in fields.items()
    }


@pytest.mark.django_db
@pytest.mark.parametrize("field", list(WIDENINGS))
def test_a_key_bounded_on_one_field_cannot_widen_another_key_on_any_field(
    tenants: Tenants, field: str
) -> None:
    bound, others, widening = WIDENINGS[field]
    client, _ = management_key(tenants, **when(bound))
    unbounded, _ = management_key(tenants)
    _, other = key_row_make(tenants.organization, **when(others))
    url = f"/api/v1/keys/{other.pk}"
    before = getattr(other, field)

    widened = client.patch(url, widening, format="json")
    other.refresh_from_db()
    kept = getattr(other, field)
    by_unbounded = unbounded.patch(url, widening, format="json")

    assert refused(widened, field), widened.content  # 200 on the old code
    assert kept == before
    # A key with no bound at all may, as the person who made it: it holds nothing back.
    assert by_unbounded.status_code == 200, by_unbounded.content


def expiry_move(key: ApiKey, expires: datetime) -> Callable[[], object]:
    """A person's session moving ``key``'s expiry (``PATCH /api/v1/keys/{id}``), to run later."""
    return lambda: key_lineage.api_key_update_bounded(
        acting_key_id=None, key=ApiKey.objects.get(pk=key.pk), changes={"expires_at": expires}
    )


@pytest.mark.django_db(transaction=True)
def test_a_key_made_while_its_parents_expiry_moves_expires_with_it(
    tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, root = management_key(tenants)
    child = child_key_make(root)[1]
    ApiKey.objects.filter(pk=child.pk).update(expires_at=timezone.now() + SOON * 48)
    tonight = timezone.now() + SOON
    inserted, commit, creator = creates_paused(monkeypatch)

    # The grandchild's create holds the child's row lock until it commits; the expiry's update
    # waits for it (on the old code too, but its UPDATE had read the tree at its start, without
    # the grandchild, and left it 48 h).
    outcomes = race_behind(
        lambda: child_key_make(child)[1],
        expiry_move(root, tonight),
        holding=inserted,
        release=commit,
        holder_pid=lambda: creator["pid"],
    )

    assert outcomes == {"holder": None, "waiter": None}
    expiries = ApiKey.objects.filter(pk__in=[child.pk, creator["key"]]).order_by("pk")
    assert list(expiries.values_list("expires_at", flat=True)) == [tonight, tonight]


@pytest.mark.django_db(transaction=True)
def test_moving_a_roots_expiry_while_a_key_below_it_is_revoked_does_not_deadlock(
    tenants: Tenants,
) -> None:
    _, root = management_key(tenants)
    child = child_key_make(root)[1]
    child_key_make(child)[1]
    # The child's row written again since: in disk order it now follows the key made from it.
    ApiKey.objects.filter(pk=child.pk).update(last_used_at=timezone.now())
    child_locked, go = threading.Event(), threading.Event()
    pids: dict[str, int] = {}

    def revoke() -> None:
        pids["revoke"] = backend_pid()
        with connection.execute_wrapper(pause_after_first_row_lock(child_locked, go)):
            key_lineage.api_key_revoke(key=ApiKey.objects.get(pk=child.pk))

    def expiry() -> None:
        scans_in_disk_order()
        expiry_move(root, timezone.now() + SOON)()

    # The expiry's walk waits for the revocation's lock on the child (on the old code its
    # UPDATE held the grandchild first, which the revocation then waited for: a deadlock).
    outcomes = race_behind(
        revoke, expiry, holding=child_locked, release=go, holder_pid=lambda: pids["revoke"]
    )

    assert outcomes == {"holder": None, "waiter": None}
    assert ApiKey.objects.filter(revoked_at=None, created_by_key=child).count() == 0


@pytest.mark.django_db
def test_the_admin_shows_a_keys_expiry_organization_and_maker_read_only(tenants: Tenants) -> None:
    _, parent = management_key(tenants, expires_at=timezone.now() + SOON)
    child = child_key_make(parent)[1]
    admin = operator_client()
    url = f"/admin/accounts/apikey/{parent.pk}/change/"

    page = admin.get(url).content.decode()
    moved = {"organization": tenants.outsider_organization.pk, "expires_at_0": "2099-01-01"}
    form = {"name": "renamed", "scope": parent.scope, "allowed_models": "[]"}
    posted = admin.post(url, form | moved | {"expires_at_1": "00:00:00"})
    added = admin.get("/admin/accounts/apikey/add/")

    for field in ("organization", "expires_at_0", "created_by", "created_by_role"):
        assert f'name="{field}"' not in page, field  # editable on the old code
    assert posted.status_code == 302, posted.content[:2000]
    parent.refresh_from_db()
    assert parent.name == "renamed"  # the form still saves what it may change
    assert (parent.organization_id, parent.expires_at) == (
        tenants.organization.pk,
        child.expires_at,
    )
    assert added.status_code == 403


@pytest.mark.django_db
def test_an_earlier_expiry_leaves_revoked_keys_below_as_they_were(tenants: Tenants) -> None:
    _, root = management_key(tenants)
    revoked, live = child_key_make(root)[1], child_key_make(root)[1]
    key_lineage.api_key_revoke(key=revoked)
    tonight = timezone.now() + SOON

    key_lineage.api_key_update_bounded(
        acting_key_id=None, key=ApiKey.objects.get(pk=root.pk), changes={"expires_at": tonight}
    )

    revoked.refresh_from_db()
    live.refresh_from_db()
    # A revoked key's row is not written again: it ended at its
    # revocation, and keeps what it had then (the old code moved its expiry too).
    assert (revoked.expires_at, live.expires_at) == (None, tonight)
