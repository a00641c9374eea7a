"""One person owns at most ``ORGANIZATIONS_PER_PERSON_MAX`` organizations.

Each organization brings its own training-run cap (``TRAINING_MAX_ACTIVE_RUNS_PER_ORGANIZATION``
runs of up to 500,000 rows on the shared workers), key rate limits and datasets: a person who could
create organizations without end multiplied all of them (and, before starter credits were once
per person, free credits).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connections

from accounts.models import Membership, Role
from accounts.services import organization_create
from routerhub.domain import NotPermitted
from tests.conftest import require_postgres
from tests.factories import dashboard_client, organization_make, user_make


def _owned(person: Any) -> int:
    return Membership.objects.filter(user=person, role=Role.OWNER).count()


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
    assert _owned(person) == 3
    refused = [str(m) for m in get_messages(answers[-1].wsgi_request)]
    assert any("ORGANIZATIONS_PER_PERSON_MAX" in m for m in refused), refused
    # Memberships by invitation are not counted against it: only what a person creates.
    member_of = organization_make()
    Membership.objects.create(user=person, organization=member_of, role=Role.MEMBER)
    assert _owned(person) == 3


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

    assert _owned(person) == 2 and len(refused) == 2
