"""An organization always keeps an owner, also when its two owners demote or remove each other at
the same moment (each change alone leaves "another owner", so checking without a lock both pass
and commit: a write skew that leaves nobody able to manage members, billing or settings).

The interleaving is forced, not hoped for: each change waits, after its "another owner?" check,
for the other change to have made its check too (a barrier). Changes that are serialized never
get there together; the barrier then times out and the first change goes on alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts import services
from accounts.models import Membership, Organization, Role
from routerhub.domain import Conflict
from tests.factories import member_add, organization_make, user_make
from tests.threads import meet_after, run_at_once


def _two_owners() -> tuple[Organization, Membership, Membership]:
    first = user_make()
    organization = organization_make(first)
    second = member_add(organization, Role.OWNER)
    memberships = Membership.objects.filter(organization=organization)
    return organization, memberships.get(user=first), memberships.get(user=second)


def _run_together(monkeypatch: Any, changes: list[Callable[[], Any]]) -> list[BaseException | None]:
    """Run ``changes`` in threads (one connection each), meeting after their owner checks."""
    meet_after(monkeypatch, services, "_ensure_another_owner", len(changes))
    return run_at_once(changes)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["demote", "remove"])
def test_two_owners_demoting_or_removing_each_other_at_once_leave_one_owner(
    monkeypatch: Any, action: str
) -> None:
    organization, first, second = _two_owners()

    def change(membership: Membership) -> Callable[[], Any]:
        if action == "demote":
            return lambda: services.membership_set_role(
                organization=organization, membership_id=membership.pk, role=Role.MEMBER
            )
        return lambda: services.membership_remove(
            organization=organization, membership_id=membership.pk
        )

    outcomes = _run_together(monkeypatch, [change(second), change(first)])

    owners = Membership.objects.filter(organization=organization, role=Role.OWNER)
    assert owners.count() == 1
    refused = [o for o in outcomes if o is not None]
    assert len(refused) == 1 and isinstance(refused[0], Conflict), outcomes
    assert "at least one owner" in str(refused[0].message)


@pytest.mark.django_db(transaction=True)
def test_an_owner_demoting_themselves_and_the_other_owner_at_once_keeps_one_owner(
    monkeypatch: Any,
) -> None:
    """One person's two tabs (demote me, remove the other owner) are the same race."""
    organization, first, second = _two_owners()

    outcomes = _run_together(
        monkeypatch,
        [
            lambda: services.membership_set_role(
                organization=organization, membership_id=first.pk, role=Role.ADMIN
            ),
            lambda: services.membership_remove(organization=organization, membership_id=second.pk),
        ],
    )

    assert Membership.objects.filter(organization=organization, role=Role.OWNER).count() == 1
    assert sum(isinstance(o, Conflict) for o in outcomes) == 1, outcomes
