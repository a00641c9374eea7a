"""One person creates at most ``ORGANIZATIONS_PER_PERSON_MAX`` organizations.

Each organization brings its own training-run cap (``TRAINING_MAX_ACTIVE_RUNS_PER_ORGANIZATION``
runs of up to 500,000 rows on the shared workers), key rate limits and datasets: a person who could
create organizations without end multiplied all of them (and, before starter credits were once
per person, free credits). Organizations a person was invited to, as an owner too, or promoted
in are not counted and not refused: a consultant owning ten clients' organizations still creates
their own, and the count was of ownership before.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connections

from accounts.invitations import invitation_accept, invitation_create
from accounts.models import Membership, Organization, Role
from accounts.services import membership_set_role, organization_create
from routerhub.domain import NotPermitted
from tests.conftest import require_postgres
from tests.factories import (
    dashboard_client,
    invitation_token_mailed,
    mails_sent,
    organization_make,
    user_make,
)


def _created(person: Any) -> int:
    return Organization.objects.filter(created_by=person).count()


@pytest.mark.django_db
def test_the_dashboard_refuses_an_organization_past_the_cap_with_a_message(
    settings: Any,
) -> None:
    settings.ORGANIZATIONS_PER_PERSON_MAX = 3
    person = user_make()
    client = dashboard_client(person, organization_make(owner=person))

    answers = [
        client.post("/dashboard/organization/new", {"name": f"Mine {i}"}, follow=True)
        for i in range(4)
    ]

    assert all(answer.status_code == 200 for answer in answers)
    assert _created(person) == 3
    assert Membership.objects.filter(user=person, role=Role.OWNER).count() == 3
    refused = [str(m) for m in get_messages(answers[-1].wsgi_request)]
    assert any("ORGANIZATIONS_PER_PERSON_MAX" in m for m in refused), refused


@pytest.mark.django_db
def test_organizations_a_person_was_invited_to_own_are_not_counted(settings: Any) -> None:
    """Invited as owner to three organizations and promoted to owner in a fourth, a person at a
    cap of two still creates two of their own; the invitations past the cap are not refused."""
    settings.ORGANIZATIONS_PER_PERSON_MAX = 2
    person = user_make()
    for index in range(3):
        owner = user_make()
        client_org = organization_make(owner=owner, name=f"Client {index}")
        with mails_sent():
            invitation_create(
                organization=client_org, email=person.email, role=Role.OWNER, invited_by=owner
            )
        token = invitation_token_mailed(person.email)
        assert invitation_accept(token=token, user=person).role == Role.OWNER
    promoted_in = organization_make(name="Client promoted")
    membership = Membership.objects.create(user=person, organization=promoted_in, role=Role.MEMBER)
    membership_set_role(organization=promoted_in, membership_id=membership.pk, role=Role.OWNER)
    assert Membership.objects.filter(user=person, role=Role.OWNER).count() == 4

    mine = [organization_create(name=f"Mine {i}", owner=person) for i in range(2)]
    with pytest.raises(NotPermitted, match="ORGANIZATIONS_PER_PERSON_MAX"):
        organization_create(name="Mine 3", owner=person)

    assert {o.pk for o in Organization.objects.filter(created_by=person)} == {o.pk for o in mine}


@pytest.mark.django_db(transaction=True)
def test_organizations_created_at_once_never_pass_the_cap(settings: Any) -> None:
    require_postgres()
    settings.ORGANIZATIONS_PER_PERSON_MAX = 2
    person = user_make()
    barrier = threading.Barrier(4)
    refused: list[BaseException] = []

    def create(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            organization_create(name=f"At once {index}", owner=person)
        except NotPermitted as exc:
            refused.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert _created(person) == 2 and len(refused) == 2
