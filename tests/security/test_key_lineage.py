"""A key never carries more authority than whoever made it: a management key neither widens
itself nor makes or changes a key to have more than it has, and revoking it revokes the keys it
made (``accounts.key_lineage``).

The attack (the security review's repro): an admin makes a management key that expires in an
hour; it PATCHes its own ``expires_at`` to null (200 on the old code) and mints a management key
that never expires, recorded only as the admin's. Revoking the leaked key left that one working.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import key_lineage
from accounts.key_lineage import LINEAGE_DEPTH_MAX
from accounts.models import ApiKey, KeyScope, Role, User
from tests.db_locks import backend_pid, race_behind
from tests.factories import Tenants, key_client, key_make, key_row_make, member_add, session_client

SOON = timedelta(hours=1)
CHAT = {"model": "test/gpt", "messages": [{"role": "user", "content": "hi"}]}


def management_key(tenants: Tenants, **fields: Any) -> tuple[APIClient, ApiKey]:
    """An admin's management key (made by her, as in the dashboard) and its row."""
    plaintext, key = key_row_make(tenants.organization, KeyScope.MANAGE, tenants.admin, **fields)
    return key_client(plaintext), key


def key_chain(tenants: Tenants) -> tuple[ApiKey, Any, Any]:
    """An admin's management key, the management key it made and the key that one made (the
    two creates' answers)."""
    client, parent = management_key(tenants)
    child = client.post("/api/v1/keys", {"name": "child", "scope": "manage"}, format="json")
    grandchild = key_client(child.json()["key"]).post(
        "/api/v1/keys", {"name": "grandchild"}, format="json"
    )
    return parent, child, grandchild


def refused(response: Any, field: str) -> bool:
    error = response.json()["error"]
    return response.status_code == 403 and error["param"] == field and field in error["message"]


def browser(user: User, tenants: Tenants) -> APIClient:
    """A signed-in person's session sending the CSRF token as the dashboard's JavaScript does."""
    client = session_client(user, tenants.organization)
    client.get("/dashboard/keys/")
    client.defaults["HTTP_X_CSRFTOKEN"] = client.cookies["csrftoken"].value
    return client


@pytest.mark.django_db
def test_an_expiring_management_key_cannot_remove_or_extend_its_own_expiry(
    tenants: Tenants,
) -> None:
    expires = timezone.now() + SOON
    client, me = management_key(tenants, expires_at=expires)

    removed = client.patch(f"/api/v1/keys/{me.pk}", {"expires_at": None}, format="json")
    later = (expires + timedelta(days=1)).isoformat()
    extended = client.patch(f"/api/v1/keys/{me.pk}", {"expires_at": later}, format="json")
    child = client.post("/api/v1/keys", {"name": "child", "scope": "manage"}, format="json")

    assert refused(removed, "expires_at") and refused(extended, "expires_at"), removed.content
    me.refresh_from_db()
    assert me.expires_at == expires
    # The child it mints takes its expiry (a person's key with no expiry would never expire).
    assert child.status_code == 201, child.content
    assert ApiKey.objects.get(pk=child.json()["id"]).expires_at == expires


@pytest.mark.django_db
def test_a_child_key_expires_no_later_than_the_key_that_made_it(tenants: Tenants) -> None:
    expires = timezone.now() + SOON
    client, parent = management_key(tenants, expires_at=expires)
    earlier = expires - timedelta(minutes=30)

    never = client.post("/api/v1/keys", {"name": "a", "expires_at": None}, format="json")
    later = client.post(
        "/api/v1/keys", {"name": "b", "expires_at": expires + timedelta(seconds=1)}, format="json"
    )
    sooner = client.post("/api/v1/keys", {"name": "c", "expires_at": earlier}, format="json")

    assert refused(never, "expires_at") and refused(later, "expires_at")
    assert sooner.status_code == 201
    assert ApiKey.objects.get(pk=sooner.json()["id"]).expires_at == earlier
    assert sooner.json()["created_by_key"] == {"id": parent.pk, "prefix": parent.prefix}


@pytest.mark.django_db
def test_a_management_key_cannot_raise_its_own_limits_or_widen_its_models(
    tenants: Tenants,
) -> None:
    client, me = management_key(
        tenants, limit="10", limit_reset="weekly", rpm=60, tpm=1000, allowed_models=["a", "b"]
    )
    url = f"/api/v1/keys/{me.pk}"

    asks = {
        "limit": [{"limit": "10.01"}, {"limit": None}],
        "limit_reset": [{"limit_reset": "daily"}],
        "rpm": [{"rpm": 61}, {"rpm": None}],
        "tpm": [{"tpm": 1001}, {"tpm": None}],
        "allowed_models": [{"allowed_models": ["a", "c"]}, {"allowed_models": []}],
    }
    answers = {
        field: [client.patch(url, body, format="json") for body in bodies]
        for field, bodies in asks.items()
    }
    narrowed = client.patch(
        url,
        {"limit": "5", "limit_reset": "monthly", "rpm": 30, "allowed_models": ["a"]},
        format="json",
    )

    for field, responses in answers.items():
        assert all(refused(response, field) for response in responses), field
    assert narrowed.status_code == 200, narrowed.content
    me.refresh_from_db()
    assert (me.limit, me.limit_reset, me.rpm, me.tpm, me.allowed_models) == (
        5,
        "monthly",
        30,
        1000,
        ["a"],
    )


@pytest.mark.django_db
def test_a_child_key_has_at_most_its_parents_limits_and_models(tenants: Tenants) -> None:
    client, parent = management_key(
        tenants, limit="10", limit_reset="daily", rpm=60, tpm=1000, allowed_models=["a", "b"]
    )

    inherited = client.post("/api/v1/keys", {"name": "plain"}, format="json")
    more = {
        "limit": {"limit": "11"},
        "rpm": {"rpm": 120},
        "tpm": {"tpm": 2000},
        "allowed_models": {"allowed_models": ["c"]},
    }
    answers = {
        field: client.post("/api/v1/keys", {"name": field} | body, format="json")
        for field, body in more.items()
    }
    within = client.post(
        "/api/v1/keys",
        {"name": "w", "limit": "3", "limit_reset": "monthly", "allowed_models": ["b"]},
        format="json",
    )

    assert inherited.status_code == 201, inherited.content
    child = ApiKey.objects.get(pk=inherited.json()["id"])
    assert (child.limit, child.limit_reset, child.rpm, child.tpm, child.allowed_models) == (
        10,
        "daily",
        60,
        1000,
        ["a", "b"],
    )
    assert (child.created_by_key_id, child.created_by_id) == (parent.pk, tenants.admin.pk)
    for field, response in answers.items():
        assert refused(response, field), field
    assert within.status_code == 201, within.content


@pytest.mark.django_db
def test_a_management_key_cannot_widen_a_key_it_changes(tenants: Tenants) -> None:
    client, _ = management_key(tenants, expires_at=timezone.now() + SOON, limit="10")
    _, persons = key_row_make(tenants.organization)  # no limits

    widened = client.patch(f"/api/v1/keys/{persons.pk}", {"expires_at": None}, format="json")
    unlimited = client.patch(f"/api/v1/keys/{persons.pk}", {"limit": None}, format="json")
    renamed = client.patch(f"/api/v1/keys/{persons.pk}", {"name": "renamed"}, format="json")

    assert refused(widened, "expires_at") and refused(unlimited, "limit")
    assert renamed.status_code == 200  # a change that grants nothing


@pytest.mark.django_db
def test_a_bounded_management_key_cannot_widen_a_key_it_did_not_make(tenants: Tenants) -> None:
    # The attack: a key limited to 10 USD lifts another key of its holder's from 1 USD to 10;
    # that key's spend never counts against it (it is not in its lineage), so the holder spends
    # 10 USD more for every such key (each field was a 200 on the old code).
    expires = timezone.now() + SOON
    bounds = {"limit": "10", "rpm": 100, "tpm": 1000, "allowed_models": ["test/gpt", "test/claude"]}
    client, _ = management_key(tenants, expires_at=expires, **bounds)
    others = key_make(tenants.organization, expires_at=expires - timedelta(minutes=30),
                      limit="1", rpm=10, tpm=100, allowed_models=["test/gpt"])  # fmt: skip
    other = ApiKey.objects.get(prefix=others[:16])
    url = f"/api/v1/keys/{other.pk}"
    widen = {
        "limit": {"limit": "10"},
        "expires_at": {"expires_at": expires.isoformat()},
        "rpm": {"rpm": 100},
        "tpm": {"tpm": 1000},
        "allowed_models": {"allowed_models": ["test/gpt", "test/claude"]},
    }

    answers = {field: client.patch(url, body, format="json") for field, body in widen.items()}
    narrowed = client.patch(url, {"limit": "0.5", "rpm": 5}, format="json")
    child = client.post("/api/v1/keys", {"name": "child", "limit": "1"}, format="json")
    raised = client.patch(f"/api/v1/keys/{child.json()['id']}", {"limit": "10"}, format="json")

    for field, response in answers.items():
        assert refused(response, field), (field, response.content)
    assert narrowed.status_code == 200, narrowed.content
    other.refresh_from_db()
    assert (other.limit, other.rpm, other.allowed_models) == (Decimal("0.5"), 5, ["test/gpt"])
    # Its own child's spend counts against it: that one it may raise up to its own bounds.
    assert raised.status_code == 200, raised.content


@pytest.mark.django_db
def test_an_earlier_expiry_holds_for_the_keys_made_from_the_key(tenants: Tenants) -> None:
    # The attack: a contractor's management key makes a key, then an owner ends the contractor's
    # access by moving its expiry to tonight; the key it made kept no expiry (old code).
    parent, child, grandchild = key_chain(tenants)
    later = key_make(tenants.organization, expires_at=timezone.now() + SOON * 48)
    tonight = timezone.now() + SOON

    moved = browser(tenants.owner, tenants).patch(
        f"/api/v1/keys/{parent.pk}", {"expires_at": tonight.isoformat()}, format="json"
    )

    assert moved.status_code == 200, moved.content
    for made in (child, grandchild):
        assert ApiKey.objects.get(pk=made.json()["id"]).expires_at == tonight
    shown = key_client(child.json()["key"]).get("/api/v1/key").json()["expires_at"]
    assert shown.replace("Z", "+00:00") == tonight.isoformat()
    # A key not made from it keeps its own.
    assert ApiKey.objects.get(prefix=later[:16]).expires_at > tonight


@pytest.mark.django_db
def test_a_person_still_sets_any_expiry_and_limit(tenants: Tenants) -> None:
    _, key = management_key(tenants, expires_at=timezone.now() + SOON, limit="10")
    admin = browser(tenants.admin, tenants)

    patched = admin.patch(
        f"/api/v1/keys/{key.pk}", {"expires_at": None, "limit": None}, format="json"
    )
    far = (timezone.now() + timedelta(days=3650)).isoformat()
    created = admin.post("/api/v1/keys", {"name": "long", "expires_at": far}, format="json")

    assert patched.status_code == 200, patched.content
    key.refresh_from_db()
    assert key.expires_at is None and key.limit is None
    assert created.status_code == 201 and created.json()["created_by_key"] is None


@pytest.mark.django_db
def test_revoking_a_key_revokes_the_keys_made_with_it_transitively(tenants: Tenants) -> None:
    parent, child, grandchild = key_chain(tenants)
    sibling = key_make(tenants.organization, KeyScope.MANAGE, tenants.admin)
    assert key_client(grandchild.json()["key"]).get("/api/v1/key").status_code == 200  # cached

    revoked = browser(tenants.owner, tenants).delete(f"/api/v1/keys/{parent.pk}")

    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    for plaintext in (child.json()["key"], grandchild.json()["key"]):
        assert key_client(plaintext).get("/api/v1/key").status_code == 401, plaintext[:16]
    assert key_client(sibling).get("/api/v1/key").status_code == 200
    listed = browser(tenants.owner, tenants).get("/api/v1/keys").json()["results"]
    lineage = {row["name"]: row["created_by_key"] for row in listed}
    assert lineage["grandchild"] == {"id": child.json()["id"], "prefix": child.json()["prefix"]}
    assert lineage["child"]["id"] == parent.pk and lineage[parent.name] is None


@pytest.mark.django_db
def test_a_chain_of_keys_stops_at_the_lineage_depth_max(tenants: Tenants) -> None:
    client, _ = management_key(tenants)
    for depth in range(1, LINEAGE_DEPTH_MAX + 1):
        made = client.post("/api/v1/keys", {"name": f"d{depth}", "scope": "manage"}, format="json")
        assert made.status_code == 201, (depth, made.content)
        client = key_client(made.json()["key"])

    deepest = client.post("/api/v1/keys", {"name": "too deep"}, format="json")

    assert deepest.status_code == 403 and "LINEAGE_DEPTH_MAX" in deepest.json()["error"]["message"]


@pytest.mark.django_db
def test_the_dashboard_shows_which_key_made_a_key(tenants: Tenants) -> None:
    client, parent = management_key(tenants)
    client.post("/api/v1/keys", {"name": "child"}, format="json")

    page = browser(tenants.admin, tenants).get("/dashboard/keys/").content.decode()

    assert f"with <code>{parent.prefix}…</code>" in page


@pytest.mark.django_db(transaction=True)
def test_the_gateway_refuses_a_child_once_its_parent_is_revoked(world: Any) -> None:
    admin = member_add(world.organization, Role.ADMIN)
    parent = key_make(world.organization, KeyScope.MANAGE, admin)
    made = key_client(parent).post("/api/v1/keys", {"name": "child"}, format="json")
    owners = key_client(key_make(world.organization, KeyScope.MANAGE))

    def chat() -> httpx.Response:
        return httpx.post(f"{world.gateway_url}/v1/chat/completions", json=CHAT, timeout=30,
                          headers={"Authorization": f"Bearer {made.json()['key']}"})  # fmt: skip

    before = chat()
    revoked = owners.delete(f"/api/v1/keys/{ApiKey.objects.get(prefix=parent[:16]).pk}")
    after = chat()

    assert before.status_code == 200, before.text
    assert revoked.status_code == 200, revoked.content
    assert after.status_code == 401 and after.json()["error"]["type"] == "unauthorized", after.text


def creates_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[threading.Event, threading.Event, dict[str, Any]]:
    """``key_lineage``'s next create pauses once its key is written, not yet committed (its
    parent's row still locked): it sets the first event, records its backend's pid and the
    key's id (``pid``, ``key``), and waits for the second."""
    inserted, commit = threading.Event(), threading.Event()
    creator: dict[str, Any] = {}
    create = key_lineage.api_key_create

    def create_then_wait(**fields: Any) -> Any:
        made = create(**fields)
        creator["pid"], creator["key"] = backend_pid(), made.key.pk
        inserted.set()
        commit.wait(timeout=20)
        return made

    monkeypatch.setattr(key_lineage, "api_key_create", create_then_wait)
    return inserted, commit, creator


@pytest.mark.django_db(transaction=True)
def test_a_key_made_while_its_parent_is_revoked_is_revoked_with_it(
    tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, parent = management_key(tenants)
    inserted, commit, creator = creates_paused(monkeypatch)

    def make_child() -> None:
        key_lineage.api_key_create_bounded(
            acting_key_id=parent.pk,
            organization=tenants.organization,
            created_by=tenants.admin,
            created_by_role=Role.ADMIN,
            requested={"name": "child"},
        )

    # The revocation waits for the create's lock on the parent (on the old code it walked the
    # tree at once, before the child committed, and left it live; the poll then fails).
    outcomes = race_behind(
        make_child,
        lambda: key_lineage.api_key_revoke(key=ApiKey.objects.get(pk=parent.pk)),
        holding=inserted,
        release=commit,
        holder_pid=lambda: creator["pid"],
    )

    assert outcomes == {"holder": None, "waiter": None}
    assert ApiKey.objects.get(pk=creator["key"]).revoked_at is not None
