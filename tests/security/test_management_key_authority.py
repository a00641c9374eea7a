"""A key never carries more authority than the person who created it, now.

The attack: an admin makes a management key on the dashboard and uses it for what only owners
may (auto top-up, checkout), then keeps using it after the owner removed her.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import httpx
import pytest
from django.apps import apps

from accounts import services
from accounts.keys import key_authenticate
from accounts.models import ApiKey, KeyScope, Membership, Organization, Role, User
from tests.factories import (
    Tenants,
    dashboard_client,
    key_client,
    key_make,
    member_add,
)
from tests.routing.servers import poll

pytestmark = pytest.mark.django_db
AUTO_TOPUP = {"threshold": "5", "amount": "100"}


def dashboard_key(user: User, organization: Organization, scope: str) -> str:
    """A key made the way a person makes one: the dashboard's form."""
    page = dashboard_client(user, organization).post(
        "/dashboard/keys/", {"name": f"{scope} key", "scope": scope}
    )
    assert page.status_code == 200
    found = re.search(r'id="new-key">(rh-[a-z]+-[\w-]+)<', page.content.decode())
    assert found, "the dashboard did not show the new key"
    return found.group(1)


def membership_of(user: User, organization: Organization) -> Membership:
    return Membership.objects.get(user=user, organization=organization)


def test_an_admins_management_key_gets_403_for_owner_only_writes(tenants: Tenants) -> None:
    admins = key_client(dashboard_key(tenants.admin, tenants.organization, KeyScope.MANAGE))
    owners = key_client(dashboard_key(tenants.owner, tenants.organization, KeyScope.MANAGE))

    topup = admins.patch("/api/v1/credits/auto-topup", AUTO_TOPUP, format="json")
    checkout = admins.post("/api/v1/credits/checkout", {"amount": "10000"}, format="json")
    read = admins.get("/api/v1/credits/auto-topup")  # what an admin may do, it still may
    owner_topup = owners.patch("/api/v1/credits/auto-topup", AUTO_TOPUP, format="json")

    assert topup.status_code == checkout.status_code == 403, topup.content
    message = topup.json()["error"]["message"]
    assert "needs the owner role" in message and "acts with the admin role" in message
    assert read.status_code == 200 and read.json()["enabled"] is False
    assert owner_topup.status_code == 200 and owner_topup.json()["enabled"] is True


def test_a_key_made_with_a_management_key_is_no_stronger_than_it(tenants: Tenants) -> None:
    admins = key_client(dashboard_key(tenants.admin, tenants.organization, KeyScope.MANAGE))

    made = admins.post("/api/v1/keys", {"name": "child", "scope": "manage"}, format="json")
    child = key_client(made.json()["key"])
    topup = child.patch("/api/v1/credits/auto-topup", AUTO_TOPUP, format="json")

    assert made.status_code == 201 and made.json()["created_by"] == tenants.admin.email
    stored = ApiKey.objects.get(pk=made.json()["id"])
    assert stored.created_by == tenants.admin and stored.created_by_role == Role.ADMIN
    assert topup.status_code == 403


def test_removing_a_member_revokes_every_key_they_created(tenants: Tenants) -> None:
    organization, admin = tenants.organization, tenants.admin
    management = dashboard_key(admin, organization, KeyScope.MANAGE)
    inference = dashboard_key(admin, organization, KeyScope.INFERENCE)
    child = key_client(management).post("/api/v1/keys", {"name": "child"}, format="json")
    owners = key_make(organization, scope=KeyScope.MANAGE)
    assert key_client(management).get("/api/v1/keys").status_code == 200  # cached as valid

    removed = dashboard_client(tenants.owner, organization).post(
        f"/dashboard/members/{membership_of(admin, organization).pk}", {"action": "remove"}
    )

    assert removed.status_code == 302
    for plaintext in (management, inference, child.json()["key"]):
        response = key_client(plaintext).get("/api/v1/key")
        assert response.status_code == 401, plaintext[:16]
    assert not ApiKey.objects.filter(created_by=admin, revoked_at__isnull=True).exists()
    assert key_client(owners).get("/api/v1/keys").status_code == 200


def test_a_role_change_reaches_a_cached_key_within_the_cache_ttl(tenants: Tenants) -> None:
    plaintext = key_make(tenants.organization, scope=KeyScope.MANAGE, created_by=tenants.admin)
    assert key_authenticate(plaintext).role == Role.ADMIN  # now in this worker's cache

    # Another worker demotes her: nothing clears this worker's cache.
    Membership.objects.filter(pk=membership_of(tenants.admin, tenants.organization).pk).update(
        role=Role.MEMBER
    )

    poll(lambda: key_authenticate(plaintext).role == Role.MEMBER, timeout=10)


def test_a_key_tells_the_role_it_acts_with(tenants: Tenants) -> None:
    client = key_client(
        key_make(tenants.organization, scope=KeyScope.MANAGE, created_by=tenants.admin)
    )
    before = client.get("/api/v1/key").json()["role"]

    services.membership_set_role(
        organization=tenants.organization,
        membership_id=membership_of(tenants.admin, tenants.organization).pk,
        role=Role.MEMBER,
    )

    assert (before, client.get("/api/v1/key").json()["role"]) == ("admin", "member")


def test_a_promoted_creators_key_keeps_the_role_it_was_made_with(tenants: Tenants) -> None:
    plaintext = key_make(tenants.organization, scope=KeyScope.MANAGE, created_by=tenants.admin)

    services.membership_set_role(
        organization=tenants.organization,
        membership_id=membership_of(tenants.admin, tenants.organization).pk,
        role=Role.OWNER,
    )

    assert key_authenticate(plaintext).role == Role.ADMIN
    topup = key_client(plaintext).patch("/api/v1/credits/auto-topup", AUTO_TOPUP, format="json")
    assert topup.status_code == 403


def test_a_deleted_creators_keys_get_401(tenants: Tenants) -> None:
    plaintext = key_make(tenants.organization, created_by=tenants.admin)

    tenants.admin.delete()

    assert key_client(plaintext).get("/api/v1/key").status_code == 401


def test_a_key_without_a_recorded_creator_acts_with_the_member_role(tenants: Tenants) -> None:
    legacy = services.api_key_create(
        organization=tenants.organization, name="legacy", created_by=None, scope=KeyScope.MANAGE
    )
    client = key_client(legacy.plaintext)

    listed = client.get("/api/v1/keys")
    created = client.post("/api/v1/keys", {"name": "x"}, format="json")

    assert listed.status_code == 200
    assert created.status_code == 403
    assert "needs the admin role" in created.json()["error"]["message"]


def test_the_migration_records_roles_and_revokes_keys_of_people_who_left(tenants: Tenants) -> None:
    migration: Any = importlib.import_module("accounts.migrations.0002_apikey_created_by_role")
    organization = tenants.organization
    gone = member_add(organization, Role.ADMIN)
    keys = {
        who: key_make(organization, scope=KeyScope.MANAGE, created_by=user)
        for who, user in (("admin", tenants.admin), ("owner", tenants.owner), ("gone", gone))
    }
    keys["nobody"] = services.api_key_create(
        organization=organization, name="by a management key", created_by=None
    ).plaintext
    Membership.objects.filter(user=gone).delete()  # removed before removal revoked keys
    ApiKey.objects.update(created_by_role=None)  # as the rows were before the migration

    migration.record_creator_roles(apps, None)

    def row(who: str) -> ApiKey:
        return ApiKey.objects.get(prefix=keys[who][:16])

    assert (row("admin").created_by_role, row("owner").created_by_role) == ("admin", "owner")
    assert row("gone").revoked_at is not None
    assert row("nobody").created_by_role is None and row("nobody").revoked_at is None
    assert key_authenticate(keys["nobody"]).role == Role.MEMBER


@pytest.mark.django_db(transaction=True)
def test_the_gateway_refuses_a_removed_members_inference_key(world: Any) -> None:
    admin = member_add(world.organization, Role.ADMIN)
    plaintext = key_make(world.organization, created_by=admin)
    body = {"model": "test/gpt", "messages": [{"role": "user", "content": "hi"}]}

    def chat() -> httpx.Response:
        return httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {plaintext}"})  # fmt: skip

    before = chat()
    services.membership_remove(
        organization=world.organization,
        membership_id=membership_of(admin, world.organization).pk,
    )
    after = chat()

    assert before.status_code == 200, before.text
    assert after.status_code == 401 and after.json()["error"]["type"] == "unauthorized"
