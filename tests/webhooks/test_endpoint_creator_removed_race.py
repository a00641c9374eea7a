"""A request of an admin being removed, reaching the database while the removal holds the
organization's row, waits for the removal's commit and then finds them gone: it creates nothing.
Two connections, the interleaving forced (the removal paused after its first row lock)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from accounts.models import Membership
from accounts.services import membership_remove
from routerhub.domain import NotPermitted
from tests.db_locks import backend_pid, pause_after_first_row_lock, race_behind
from tests.factories import tenants_make
from webhooks.models import WebhookEndpoint
from webhooks.services import webhook_endpoint_create


@pytest.mark.django_db(transaction=True)
def test_a_create_by_the_admin_being_removed_waits_for_the_removal_and_is_refused() -> None:
    tenants = tenants_make()
    membership = Membership.objects.get(user=tenants.admin, organization=tenants.organization)
    holding, release = threading.Event(), threading.Event()
    pids: list[int] = []

    def remove() -> None:  # pauses holding the organization's row (owners_lock), membership kept
        pids.append(backend_pid())
        with connection.execute_wrapper(pause_after_first_row_lock(holding, release)):
            membership_remove(organization=tenants.organization, membership_id=membership.pk)

    def create() -> None:
        webhook_endpoint_create(
            organization=tenants.organization,
            url="https://hooks.example.com/late",
            events=["budget.threshold"],
            created_by=tenants.admin,
        )

    # Fails without the organization lock: the create finds the membership still there, commits
    # at once and never waits (the poll for its wait fails), and the endpoint stays, enabled.
    outcomes = race_behind(
        remove, create, holding=holding, release=release, holder_pid=lambda: pids[0]
    )

    assert outcomes["holder"] is None
    assert isinstance(outcomes["waiter"], NotPermitted), outcomes
    assert not WebhookEndpoint.objects.filter(organization=tenants.organization).exists()
    assert not Membership.objects.filter(pk=membership.pk).exists()
