"""Revoking a key revokes the keys made from it, from every place a key is revoked (the API, the
dashboard, the Django admin), without deadlocking against a member's removal and in as many
statements for a tree of thousands as for a tree of one (``accounts.key_lineage``)."""

from __future__ import annotations

import re
import secrets
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import key_lineage, services
from accounts.models import ApiKey, Membership, Role
from routerhub.domain import NotAuthenticated
from tests.db_locks import (
    backend_pid,
    pause_after_first_row_lock,
    queue_behind,
    race_behind,
    scans_in_disk_order,
)
from tests.factories import Tenants, child_key_make, user_make
from tests.security.test_key_lineage import browser, management_key

WIDE = 2_000


def tree_make(tenants: Tenants, width: int) -> ApiKey:
    """A management key with ``width`` keys made from it and one key made from the first."""
    _, root = management_key(tenants)
    ApiKey.objects.bulk_create(
        ApiKey(
            organization=tenants.organization,
            name=f"child {i}",
            prefix=f"rh_test_{i}",
            digest=secrets.token_hex(32),
            created_by=tenants.admin,
            created_by_role=Role.ADMIN,  # as a key made by the admin's key's request
            created_by_key=root,
            lineage_depth=1,
        )
        for i in range(width)
    )
    child_key_make(ApiKey.objects.filter(created_by_key=root).earliest("pk"))
    return root


def crossed_tree(tenants: Tenants) -> tuple[ApiKey, ApiKey, ApiKey]:
    """R, X and K of an admin's tree where a deeper key has the smaller id: R made Y; Y made Z
    and X; R made K after (K's id is larger than X's, its depth smaller)."""
    _, root = management_key(tenants)
    made = child_key_make(root)[1]
    child_key_make(made)
    deeper = child_key_make(made)[1]
    acting = child_key_make(root, scope="manage")[1]
    assert deeper.pk < acting.pk and deeper.lineage_depth > acting.lineage_depth
    return root, deeper, acting


def live(tenants: Tenants) -> int:
    return ApiKey.objects.filter(organization=tenants.organization, revoked_at=None).count()


@pytest.mark.django_db(transaction=True)
def test_removing_a_member_while_their_key_is_revoked_does_not_deadlock(
    tenants: Tenants,
) -> None:
    _, root = management_key(tenants)
    child_key_make(child_key_make(root)[1])
    # The root's row written again since (its last use): in disk order it now follows the keys
    # made from it, as in a table that has been in use.
    ApiKey.objects.filter(pk=root.pk).update(last_used_at=timezone.now())
    membership = Membership.objects.get(organization=tenants.organization, user=tenants.admin)
    root_locked, go = threading.Event(), threading.Event()
    pids: dict[str, int] = {}

    def revoke() -> None:
        pids["revoke"] = backend_pid()
        with connection.execute_wrapper(pause_after_first_row_lock(root_locked, go)):
            key_lineage.api_key_revoke(key=ApiKey.objects.get(pk=root.pk))

    def remove() -> None:
        scans_in_disk_order()  # the plan a small organization's keys get
        services.membership_remove(organization=tenants.organization, membership_id=membership.pk)

    # The removal waits for the revocation's lock on the root (on the old code, holding the
    # keys below it, which the revocation then waits for: "deadlock detected").
    outcomes = race_behind(
        revoke, remove, holding=root_locked, release=go, holder_pid=lambda: pids["revoke"]
    )

    assert outcomes == {"holder": None, "waiter": None}
    assert live(tenants) == 0


@pytest.mark.django_db(transaction=True)
def test_a_key_changing_a_deeper_key_with_a_smaller_id_while_the_tree_is_revoked_does_not_deadlock(
    tenants: Tenants,
) -> None:
    root, deeper, acting = crossed_tree(tenants)
    level_locked, go = threading.Event(), threading.Event()
    pids: dict[str, int] = {}

    def revoke() -> None:
        pids["revoke"] = backend_pid()
        with connection.execute_wrapper(pause_after_first_row_lock(level_locked, go, statements=2)):
            key_lineage.api_key_revoke(key=ApiKey.objects.get(pk=root.pk))

    def rename() -> None:
        key_lineage.api_key_update_bounded(
            acting_key_id=acting.pk, key=deeper, changes={"name": "renamed"}
        )

    # The revocation holds R, Y and K (levels 0 and 1); the rename waits for K, holding nothing
    # (on the old code, in id order, holding X, which the revocation's next level then waits
    # for: "deadlock detected", a 500). Once the revocation commits, K is revoked: a 401.
    outcomes = race_behind(
        revoke, rename, holding=level_locked, release=go, holder_pid=lambda: pids["revoke"]
    )

    assert outcomes["holder"] is None
    assert isinstance(outcomes["waiter"], NotAuthenticated)
    assert live(tenants) == 0
    assert ApiKey.objects.get(pk=deeper.pk).name == deeper.name


def short_lock_waits() -> None:
    """This connection reports a deadlock after 50 ms (a regression fails fast) and gives up a
    lock wait after 15 s: longer than ``queue_behind`` may poll for the next waiter to queue
    (10 s, while the waiters queued before it wait on), shorter than its join (30 s), so a lock
    wait never ends before the holder is released and nothing waits forever. ``SET
    deadlock_timeout`` needs a superuser: the tests connect as ``postgres``, as CI does."""
    with connection.cursor() as cursor:
        cursor.execute("SET deadlock_timeout = '50ms'")
        cursor.execute("SET lock_timeout = '15s'")


@pytest.mark.django_db(transaction=True)
def test_removing_a_member_while_their_key_changes_a_deeper_key_with_a_smaller_id_does_not_deadlock(
    tenants: Tenants,
) -> None:
    _, deeper, acting = crossed_tree(tenants)  # all five the admin's: her removal locks them
    membership = Membership.objects.get(organization=tenants.organization, user=tenants.admin)
    k_locked, go = threading.Event(), threading.Event()
    pids: dict[str, int] = {}

    def edit() -> None:  # the owner shortens K's expiry in the dashboard: K's row held
        expires = timezone.now() + timedelta(days=1)
        with connection.execute_wrapper(pause_after_first_row_lock(k_locked, go)):
            key_lineage.api_key_update_bounded(
                acting_key_id=None,
                key=ApiKey.objects.get(pk=acting.pk),
                changes={"expires_at": expires},
            )

    def rename() -> None:  # K renames X: ``_pair_lock`` takes K, then X
        short_lock_waits()
        pids["rename"] = backend_pid()
        key_lineage.api_key_update_bounded(
            acting_key_id=acting.pk, key=deeper, changes={"name": "renamed"}
        )

    def remove() -> None:
        short_lock_waits()
        pids["remove"] = backend_pid()
        services.membership_remove(organization=tenants.organization, membership_id=membership.pk)

    # The rename queues first for K; the removal queues behind it, holding R and Y only. Once
    # the edit commits the rename takes K and X, then the removal all five. On the old code,
    # in id order, the removal held X too when it queued for K: the rename, given K, then
    # waited for X ("deadlock detected", a 500 on one side).
    outcomes = queue_behind(
        edit, {"rename": rename, "remove": remove}, holding=k_locked, release=go, pids=pids
    )

    assert outcomes == {"holder": None, "rename": None, "remove": None}
    assert live(tenants) == 0
    assert ApiKey.objects.get(pk=deeper.pk).name == "renamed"


@pytest.mark.django_db
def test_a_wide_tree_is_revoked_whole_by_the_same_statements_as_a_narrow_one(
    tenants: Tenants,
) -> None:
    narrow, wide = tree_make(tenants, 1), tree_make(tenants, WIDE)

    with CaptureQueriesContext(connection) as narrow_queries:
        key_lineage.api_key_revoke(key=narrow)
    with CaptureQueriesContext(connection) as wide_queries:
        key_lineage.api_key_revoke(key=wide)

    assert live(tenants) == 0

    # No id list goes through Python: the statements differ in their numbers only (the root's
    # id, the time), not in length (on the old code: IN lists of 2,000 ids).
    def shapes(queries: CaptureQueriesContext) -> list[str]:
        return [re.sub(r"\d+", "0", query["sql"]) for query in queries.captured_queries]

    assert shapes(wide_queries) == shapes(narrow_queries)
    statements = [sql for sql in shapes(wide_queries) if not sql.startswith(("SAVEPOINT", "RELE"))]
    assert len(statements) == 5  # the key, its 2 levels, an empty third, the UPDATE


@pytest.mark.django_db
def test_revoking_a_key_on_the_dashboard_revokes_the_keys_made_with_it(
    tenants: Tenants,
) -> None:
    _, parent = management_key(tenants)
    child_key_make(child_key_make(parent)[1])

    response = browser(tenants.admin, tenants).post(f"/dashboard/keys/{parent.pk}/revoke")

    assert response.status_code == 302, response.content
    assert live(tenants) == 0


def operator_client() -> Client:
    operator = user_make()
    operator.is_staff = operator.is_superuser = True
    operator.save(update_fields=["is_staff", "is_superuser"])
    client = Client()
    client.force_login(operator)
    return client


@pytest.mark.django_db
def test_the_admin_action_revokes_keys_with_the_keys_made_from_them(tenants: Tenants) -> None:
    _, parent = management_key(tenants)
    child_key_make(child_key_make(parent)[1])

    response = operator_client().post(
        "/admin/accounts/apikey/",
        {"action": "revoke", "_selected_action": [parent.pk]},
    )

    assert response.status_code == 302, response.content
    assert live(tenants) == 0


@pytest.mark.django_db
def test_the_admin_shows_a_keys_parent_depth_and_revocation_read_only(tenants: Tenants) -> None:
    _, parent = management_key(tenants)
    _, child = child_key_make(parent)

    page = operator_client().get(f"/admin/accounts/apikey/{child.pk}/change/").content.decode()

    assert page.count("<select")  # the form's own fields stay editable (its scope)
    for field in ("created_by_key", "lineage_depth", "revoked_at_0"):
        assert f'name="{field}"' not in page, field
    assert parent.prefix in page  # the parent, shown as text
