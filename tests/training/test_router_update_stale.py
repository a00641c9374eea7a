"""A router's settings change (``PATCH /api/v1/routers/{slug}``) writes only what it changes, on
the router's locked row: a version activated, rolled back or put in an experiment between the
request's read of the router and its write stays as it is. (It saved the whole row it had read:
a rollback of a bad version made meanwhile was undone, the bad version served again.)"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import transaction

from accounts.models import KeyScope
from routerhub.domain import NotFound
from tests.db_locks import backend_pid, waiting_for
from tests.factories import key_client, key_make, organization_make
from tests.routing.servers import poll
from tests.threads import run_at_once
from training import lifecycle, services
from training.models import Router, RouterEventKind, RouterVersion

pytestmark = pytest.mark.django_db

DEADLINE_S = 20.0


def _router_on_version_2() -> Router:
    organization = organization_make()
    router = Router.objects.create(organization=organization, slug="r", candidates=["a", "b"])
    for number in (1, 2, 3):
        RouterVersion.objects.create(
            router=router, number=number, candidates=["a", "b"], artifact_prefix="x", checksum="c"
        )
    router.active_version = router.versions.get(number=2)
    router.save()
    return router


def test_a_settings_change_keeps_a_rollback_made_after_the_router_was_read() -> None:
    router = _router_on_version_2()
    as_read = Router.objects.select_related("active_version").get(pk=router.pk)  # the PATCH's read
    lifecycle.router_rollback(router=router, actor="test")  # version 2 was bad: back to 1
    lifecycle.router_lifecycle_update(
        router=router, changes={"challenger_version": 3}, actor="test"
    )

    services.router_update(router=as_read, changes={"name": "Renamed", "default_tradeoff": 0.7})

    router.refresh_from_db()
    assert router.active_version is not None and router.active_version.number == 1
    assert router.challenger_version is not None and router.challenger_version.number == 3
    assert (router.name, router.default_tradeoff) == ("Renamed", 0.7)


def test_a_settings_change_racing_a_delete_is_not_found_not_a_server_error() -> None:
    router = _router_on_version_2()
    as_read = Router.objects.get(pk=router.pk)  # the PATCH's read, before the DELETE commits
    services.router_delete(router=router)

    with pytest.raises(NotFound):  # a 404, as the view answers a router it cannot find
        services.router_update(router=as_read, changes={"name": "Renamed"})
    assert not Router.objects.filter(pk=as_read.pk).exists()


@pytest.mark.django_db(transaction=True)  # two connections: the switch's and the PATCH's
def test_the_api_answers_the_router_as_written() -> None:
    """The PATCH answers the row it wrote (``row_update``'s locked re-read), not the router it
    read: version 3, activated by a switch whose transaction holds the router's row while the
    PATCH reads it, is what it says is active (fails when the view answers the router as read:
    version 2)."""
    router = _router_on_version_2()
    manage = key_client(key_make(router.organization, scope=KeyScope.MANAGE))
    switching, commit = threading.Event(), threading.Event()
    pids: list[int] = []
    answers: list[Any] = []

    def switch() -> None:  # version 3 activated, its transaction still open
        with transaction.atomic():
            lifecycle.version_switch(
                router=router, number=3, kind=RouterEventKind.ACTIVATED, actor="test"
            )
            pids.append(backend_pid())
            switching.set()
            assert commit.wait(DEADLINE_S)

    def patch() -> None:  # reads version 2 (committed), then waits on the switch's row lock
        assert switching.wait(DEADLINE_S)
        answers.append(
            manage.patch("/api/v1/routers/r", {"slug": "r2", "name": "N"}, format="json")
        )

    def release() -> None:  # once the PATCH waits on the switch's transaction, commit it
        try:
            assert switching.wait(DEADLINE_S)
            poll(lambda: waiting_for(pids[0]), timeout=DEADLINE_S)
        finally:
            commit.set()

    assert run_at_once([switch, patch, release]) == [None, None, None]

    answer = answers[0]
    assert answer.status_code == 200, answer.json()
    assert (answer.json()["slug"], answer.json()["name"]) == ("r2", "N")
    assert answer.json()["active_version"] == 3
    taken = Router.objects.create(organization=router.organization, slug="r3")
    refused = manage.patch("/api/v1/routers/r2", {"slug": taken.slug}, format="json")
    assert refused.status_code == 409
