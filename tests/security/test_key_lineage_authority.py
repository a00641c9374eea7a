"""A key made by a key, or bounded, never carries more authority than the key it came from
(README, "A key made by a key has no more than that key"): it revokes only its own lineage,
narrowing a key's ``allowed_models`` narrows the keys made from it, and the grant checks of an
update hold on the rows as they are locked (``accounts.key_lineage``, the tenth review)."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts import key_lineage
from accounts.models import ApiKey
from routerhub.domain import NotPermitted
from tests.db_locks import while_uncommitted
from tests.factories import Tenants, child_key_make, key_client, key_make
from tests.security.test_key_lineage import browser, management_key
from tests.security.test_key_lineage_revoke import operator_client


def _other_key(tenants: Tenants) -> ApiKey:
    return ApiKey.objects.get(prefix=key_make(tenants.organization)[:16])


@pytest.mark.django_db
@pytest.mark.parametrize("bound", [{"limit": "10"}, {"made_by_key": True}])
def test_a_bounded_or_key_made_key_revokes_only_its_own_lineage(
    tenants: Tenants, bound: dict[str, object]
) -> None:
    if bound.get("made_by_key"):  # an unbounded key made by an unbounded key
        root_client, _ = management_key(tenants)
        made = root_client.post("/api/v1/keys", {"name": "ci", "scope": "manage"}, format="json")
        client = key_client(made.json()["key"])
        acting = ApiKey.objects.get(pk=made.json()["id"])
    else:
        client, acting = management_key(tenants, limit="10")
    other, own = _other_key(tenants), child_key_make(acting)[1]
    grandchild = child_key_make(own)[1]

    refused = client.delete(f"/api/v1/keys/{other.pk}")
    other.refresh_from_db()
    revoked_own = client.delete(f"/api/v1/keys/{own.pk}")
    grandchild.refresh_from_db()

    assert refused.status_code == 403, refused.content  # 200 on the old code
    error = refused.json()["error"]
    assert error["param"] == "key_id" and "revokes only itself" in error["message"]
    assert other.revoked_at is None
    assert revoked_own.status_code == 200, revoked_own.content
    assert grandchild.revoked_at is not None


@pytest.mark.django_db
def test_an_unbounded_key_and_a_persons_session_revoke_any_key(tenants: Tenants) -> None:
    client, _ = management_key(tenants)
    first, second = _other_key(tenants), _other_key(tenants)

    by_key = client.delete(f"/api/v1/keys/{first.pk}")
    by_person = browser(tenants.admin, tenants).delete(f"/api/v1/keys/{second.pk}")

    assert by_key.status_code == 200, by_key.content
    assert by_person.status_code == 200, by_person.content


@pytest.mark.django_db
def test_the_dashboard_and_admin_revoke_paths_take_no_key(tenants: Tenants) -> None:
    plaintext = key_make(tenants.organization, "manage", tenants.admin, limit="10")
    other = _other_key(tenants)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {plaintext}"}

    dashboard = Client().post(f"/dashboard/keys/{other.pk}/revoke", **bearer)
    admin = Client().post(
        "/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [other.pk]}, **bearer
    )
    other.refresh_from_db()

    assert dashboard.status_code == 302 and "login" in dashboard["Location"], dashboard
    assert admin.status_code == 302 and "login" in admin["Location"], admin
    assert other.revoked_at is None


@pytest.mark.django_db(transaction=True)
def test_a_grant_waits_for_a_narrowing_of_the_acting_key_committing_meanwhile(
    tenants: Tenants,
) -> None:
    _, parent = management_key(tenants, rpm=100)
    child = child_key_make(parent)[1]

    def narrow() -> None:  # a person's session narrowing the acting key, not yet committed
        ApiKey.objects.filter(pk=parent.pk).update(rpm=10)

    def grant() -> None:
        key = ApiKey.objects.get(pk=child.pk)
        key_lineage.api_key_update_bounded(acting_key_id=parent.pk, key=key, changes={"rpm": 50})

    refused = while_uncommitted(narrow, grant)
    child.refresh_from_db()

    # Old code: checked against rpm 100 before its transaction, it gave the child 50.
    assert isinstance(refused, NotPermitted), refused
    assert child.rpm == 100


@pytest.mark.django_db
def test_narrowing_a_keys_models_narrows_the_keys_made_from_it(tenants: Tenants) -> None:
    _, parent = management_key(tenants, allowed_models=["test/gpt", "test/free"])
    child = child_key_make(parent)[1]  # inherits both
    grandchild = child_key_make(child)[1]
    key_lineage.api_key_update_bounded(
        acting_key_id=child.pk, key=grandchild, changes={"allowed_models": ["test/gpt"]}
    )
    person = browser(tenants.admin, tenants)

    narrowed = person.patch(
        f"/api/v1/keys/{parent.pk}", {"allowed_models": ["test/free"]}, format="json"
    )
    shown = person.get(f"/api/v1/keys/{child.pk}").json()["allowed_models"]
    grandchild.refresh_from_db()

    assert narrowed.status_code == 200, narrowed.content
    assert shown == ["test/free"]  # ["test/gpt", "test/free"] on the old code
    # Nothing of its own list is left: a name no model has, not [] (which allows any model).
    assert grandchild.allowed_models == [key_lineage.NO_MODEL]


@pytest.mark.django_db
def test_widening_a_keys_models_leaves_the_keys_made_from_it(tenants: Tenants) -> None:
    _, parent = management_key(tenants, allowed_models=["test/gpt"])
    child = child_key_make(parent)[1]

    widened = browser(tenants.admin, tenants).patch(
        f"/api/v1/keys/{parent.pk}", {"allowed_models": []}, format="json"
    )
    child.refresh_from_db()

    assert widened.status_code == 200, widened.content
    assert child.allowed_models == ["test/gpt"]


@pytest.mark.django_db
def test_narrowing_a_keys_models_in_the_admin_narrows_the_keys_made_from_it(
    tenants: Tenants,
) -> None:
    _, parent = management_key(tenants, allowed_models=["test/gpt", "test/free"])
    child = child_key_make(parent)[1]
    form = {"name": parent.name, "scope": parent.scope, "allowed_models": '["test/free"]'}

    posted = operator_client().post(f"/admin/accounts/apikey/{parent.pk}/change/", form)
    child.refresh_from_db()

    assert posted.status_code == 302, posted.content[:2000]
    assert child.allowed_models == ["test/free"]  # both on the old code
