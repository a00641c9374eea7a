"""A key never carries more authority than the person behind it, also once an operator has
deactivated that person (``User.is_active = False``: the Django admin's way to lock an account out
without deleting its history).

The attack: a compromised or banned account is deactivated; its dashboard session stops working
(Django's backend refuses an inactive user), but on the old code every key it had made kept
working at the gateway and on the management API, with the owner's role: a management key could
still raise its own limits and mint new keys, which then worked too.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from accounts.keys import key_cache_clear
from accounts.models import KeyScope, Role, User
from tests.factories import Tenants, key_client, key_make, member_add

CHAT = {"model": "test/gpt", "messages": [{"role": "user", "content": "hi"}]}


def deactivate(user: User) -> None:
    User.objects.filter(pk=user.pk).update(is_active=False)  # as the admin's checkbox does
    key_cache_clear()  # this worker; others within API_KEY_CACHE_TTL


@pytest.mark.django_db
def test_a_deactivated_creators_management_key_authenticates_nothing(tenants: Tenants) -> None:
    management = key_make(tenants.organization, scope=KeyScope.MANAGE, created_by=tenants.owner)
    inference = key_make(tenants.organization, created_by=tenants.owner)
    assert key_client(management).get("/api/v1/keys").status_code == 200

    deactivate(tenants.owner)
    minted = key_client(management).post("/api/v1/keys", {"name": "again"}, format="json")
    read = key_client(inference).get("/api/v1/key")

    assert minted.status_code == 401, minted.content
    assert read.status_code == 401, read.content


@pytest.mark.django_db
def test_reactivating_the_creator_brings_the_keys_back(tenants: Tenants) -> None:
    management = key_make(tenants.organization, scope=KeyScope.MANAGE, created_by=tenants.admin)
    deactivate(tenants.admin)
    assert key_client(management).get("/api/v1/keys").status_code == 401

    User.objects.filter(pk=tenants.admin.pk).update(is_active=True)
    key_cache_clear()

    assert key_client(management).get("/api/v1/key").json()["role"] == "admin"


@pytest.mark.django_db(transaction=True)
def test_the_gateway_refuses_a_deactivated_creators_inference_key(world: Any) -> None:
    person = member_add(world.organization, Role.ADMIN)
    plaintext = key_make(world.organization, created_by=person)

    def chat() -> httpx.Response:
        return httpx.post(f"{world.gateway_url}/v1/chat/completions", json=CHAT, timeout=30,
                          headers={"Authorization": f"Bearer {plaintext}"})  # fmt: skip

    before = chat()
    deactivate(person)  # the gateway runs in this process: its cache is cleared too
    after = chat()

    assert before.status_code == 200, before.text
    assert after.status_code == 401 and after.json()["error"]["type"] == "unauthorized", after.text
