"""The lifecycle API's rules, without serving: who may change an experiment, which versions it
may name, one experiment at a time, what the audit log records and where a rollback goes."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import KeyScope, Role
from tests.factories import key_client, key_make, member_add, organization_make
from training.models import Router, RouterEvent, RouterVersion

pytestmark = pytest.mark.django_db


def router_with_versions(count: int) -> tuple[Router, APIClient]:
    organization = organization_make()
    router = Router.objects.create(organization=organization, slug="r", candidates=["a", "b"])
    for number in range(1, count + 1):
        RouterVersion.objects.create(
            router=router, number=number, candidates=["a", "b"], artifact_prefix="x", checksum="c"
        )
    router.active_version = router.versions.get(number=1)
    router.save()
    return router, key_client(key_make(organization, scope=KeyScope.MANAGE))


def patch(client: APIClient, **changes: Any) -> Any:
    return client.patch("/api/v1/routers/r/lifecycle", changes, format="json")


def test_a_shadow_and_its_settings_are_audited_once_each() -> None:
    router, manage = router_with_versions(2)

    started = patch(manage, shadow_version=2, shadow_share=0.25, exploration_rate=0.1)
    unchanged = patch(manage, shadow_share=0.25)
    stopped = patch(manage, shadow_version=None)

    assert started.status_code == 200, started.json()
    assert started.json() | {"shadow_version": 2, "shadow_share": 0.25} == started.json()
    assert unchanged.status_code == stopped.status_code == 200
    kinds = list(RouterEvent.objects.filter(router=router).values_list("kind", "to_version"))
    assert kinds == [("shadow_stopped", 2), ("settings_changed", None), ("shadow_started", 2)]
    settings = RouterEvent.objects.get(kind="settings_changed").evidence
    assert settings == {"shadow_share": 0.25, "exploration_rate": 0.1}


def test_an_experiment_names_a_version_of_this_router_other_than_the_active_one() -> None:
    _, manage = router_with_versions(2)

    assert patch(manage, shadow_version=9).status_code == 404
    assert patch(manage, shadow_version=1).status_code == 400  # the active version
    assert patch(manage, exploration_rate=0.9).status_code == 400  # above ROUTER_EXPLORATION_MAX
    assert patch(manage, challenger_version=2).status_code == 200
    assert patch(manage, shadow_version=2).status_code == 409  # one experiment at a time


def test_members_read_the_lifecycle_but_only_admins_change_it_or_roll_back() -> None:
    router, _ = router_with_versions(2)
    member = member_add(router.organization, Role.MEMBER)
    client = key_client(key_make(router.organization, scope=KeyScope.MANAGE, created_by=member))

    assert client.get("/api/v1/routers/r/lifecycle").status_code == 200
    assert client.get("/api/v1/routers/r/events").status_code == 200
    assert patch(client, shadow_version=2).status_code == 403
    assert client.post("/api/v1/routers/r/rollback").status_code == 403


def test_rollback_undoes_the_last_switch_or_goes_to_the_newest_older_version() -> None:
    router, manage = router_with_versions(3)
    router.active_version = router.versions.get(number=3)
    router.save()

    unaudited = manage.post("/api/v1/routers/r/rollback").json()  # no switch in the log yet
    manage.post("/api/v1/routers/r/versions/3/activate")
    undone = manage.post("/api/v1/routers/r/rollback").json()

    assert unaudited["active_version"] == 2 and undone["active_version"] == 2
    first = router_with_versions(1)[1]
    assert first.post("/api/v1/routers/r/rollback").status_code == 409  # nothing older
