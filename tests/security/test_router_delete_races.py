"""A write naming a router (a key's ``allowed_models``, a pipeline version's steps) locks the
router's row until it commits (``routerhub.router_names.routers_named_lock``): a router delete
coming meanwhile waits and then sees it (a 409), instead of missing a key not yet committed and
leaving it a router made later with the same slug (the tenth review)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from accounts import services
from routerhub.domain import Conflict
from routing.models import Pipeline, PipelineKind
from routing.pipeline_api import pipeline_version_add
from tests.db_locks import while_uncommitted
from tests.factories import Tenants
from training import services as training
from training.models import Router


def delete_while_uncommitted(write: Callable[[], object], router: Router) -> object:
    """``router``'s delete run while ``write``'s transaction is open: what the delete raised."""
    return while_uncommitted(write, lambda: training.router_delete(router=router))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("named", ["router/support", "router-support-0.5"])
def test_a_router_delete_waits_for_a_key_naming_it_and_refuses(
    tenants: Tenants, named: str
) -> None:
    router = Router.objects.create(
        organization=tenants.organization, slug="support", candidates=["a", "b"]
    )

    def create() -> None:
        services.api_key_create(
            organization=tenants.organization,
            name="support bot",
            created_by=tenants.admin,
            allowed_models=[named],
        )

    refused = delete_while_uncommitted(create, router)

    # None on the old code: the delete did not wait, found no key, and deleted the router.
    assert isinstance(refused, Conflict), refused
    assert Router.objects.filter(pk=router.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_router_delete_waits_for_a_key_changed_to_name_it_and_refuses(tenants: Tenants) -> None:
    router = Router.objects.create(
        organization=tenants.organization, slug="support", candidates=["a", "b"]
    )
    key = services.api_key_create(
        organization=tenants.organization, name="bot", created_by=tenants.admin
    ).key

    def change() -> None:
        services.api_key_update(key=key, changes={"allowed_models": ["router/support"]})

    refused = delete_while_uncommitted(change, router)

    assert isinstance(refused, Conflict), refused  # None on the old code
    assert Router.objects.filter(pk=router.pk).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "step", [{"model": "router/support"}, {"model": "test/gpt", "pre_gate": {"router": "support"}}]
)
def test_a_router_delete_waits_for_a_pipeline_version_calling_it_and_refuses(
    tenants: Tenants, step: dict[str, object]
) -> None:
    router = Router.objects.create(
        organization=tenants.organization, slug="support", candidates=["a", "b"]
    )
    pipeline = Pipeline.objects.create(organization=tenants.organization, slug="p", name="p")

    def add() -> None:
        pipeline_version_add(pipeline, PipelineKind.CASCADE, [step, {"model": "test/gpt"}])

    refused = delete_while_uncommitted(add, router)

    assert isinstance(refused, Conflict), refused  # None on the old code
    assert Router.objects.filter(pk=router.pk).exists()
