"""No person's organization can become the platform's, whose router ``auto`` serves every
organization's ``router/auto``.

The platform organization is found by its slug, ``routerhub-platform``, and created by
``manage.py train_platform_router``. Until an operator runs it (every new deployment), a person
could create an organization named "RouterHub Platform" and get that slug: their router ``auto``
then decided for every organization, and the operator's command trained the platform router
inside their organization, which they own.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import PLATFORM_ORGANIZATION_SLUG, Organization, Role
from routing import routers
from routing.routers import router_cache_clear
from tests.factories import dashboard_client, member_add, organization_make, user_make
from tests.routing.world import World
from tests.serving.test_router_serving import CHEAP, DEAR, MATH_PROMPT
from tests.training.conftest import csv_bytes, synthetic_frame
from training.serving import Router

pytestmark = pytest.mark.usefixtures("eager_celery", "media")


def _auto(world: World) -> dict[str, object]:
    client = world.openai_client()
    reply = client.chat.completions.create(
        model="router/auto",
        messages=[{"role": "user", "content": MATH_PROMPT}],
        extra_body={"router": {"tradeoff": 0}},
    )
    routing: dict[str, object] = reply.model_extra["routing"]
    return routing


def _platform_dataset(tmp_path: Path) -> Path:
    frame = synthetic_frame(rows=180).rename(
        columns=lambda c: c.replace("math-model", CHEAP).replace("prose-model", DEAR)
    )
    path = tmp_path / "platform.csv"
    path.write_bytes(csv_bytes(frame))
    return path


@pytest.mark.django_db
def test_no_person_can_create_an_organization_with_the_platforms_slug() -> None:
    person = user_make()
    first = organization_make(owner=person)
    client = dashboard_client(person, first)

    for name in ("RouterHub Platform", "routerhub-platform", "ROUTERHUB  platform"):
        assert client.post("/dashboard/organization/new", {"name": name}).status_code == 302

    created = Organization.objects.filter(memberships__user=person).exclude(pk=first.pk)
    assert created.count() == 3
    assert not created.filter(slug=PLATFORM_ORGANIZATION_SLUG).exists()
    assert not Organization.objects.filter(slug=PLATFORM_ORGANIZATION_SLUG).exists()


def _squatted() -> Organization:
    """An organization of people holding the platform's slug (taken before it was reserved)."""
    squatter = organization_make(name="RouterHub Platform")
    Organization.objects.filter(pk=squatter.pk).update(slug=PLATFORM_ORGANIZATION_SLUG)
    return squatter


def test_the_operators_command_refuses_an_organization_of_people_holding_the_slug(
    world: World, tmp_path: Path
) -> None:
    squatter = _squatted()

    with pytest.raises(CommandError, match="has members"):
        call_command("train_platform_router", dataset=_platform_dataset(tmp_path))

    assert not Router.objects.filter(organization=squatter).exists()
    assert _auto(world)["strategy"] == "heuristic"


def test_a_router_auto_of_an_organization_of_people_is_not_router_auto(
    world: World, tmp_path: Path
) -> None:
    # Trained by the command while the organization had no member, then a person joins it: the
    # state a squatter reached by training their own router "auto" before this fix.
    call_command("train_platform_router", dataset=_platform_dataset(tmp_path))
    assert _auto(world)["strategy"] == "trained"

    member_add(Organization.objects.get(slug=PLATFORM_ORGANIZATION_SLUG), Role.OWNER)
    router_cache_clear()

    assert _auto(world)["strategy"] == "heuristic"


@pytest.mark.django_db
def test_an_activation_in_an_organization_of_people_holding_the_slug_warms_their_router(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Activation warming keys a router by its organization as ``router_row`` does: the
    squatter's "auto" is theirs, not the platform's (before, it was taken for the platform's:
    the platform's row reloaded and theirs never warmed)."""
    squatter = _squatted()
    Router.objects.create(
        organization=squatter, slug="auto", name="auto", candidates=[CHEAP, DEAR],
        activated_at=timezone.now(),
    )  # fmt: skip
    router_cache_clear()
    routers._rows.put((squatter.pk, "auto"), None)  # served here, before this activation
    routers._rows.put((None, "auto"), None)
    warmed: list[object] = []
    monkeypatch.setattr(routers, "_warm_row", lambda key, row: warmed.append((key, row.slug)))

    routers._warm_activated(timezone.now() - timedelta(minutes=1))

    assert warmed == [((squatter.pk, "auto"), "auto")]
    router_cache_clear()
