"""A router is not deleted nor renamed while a pipeline's active version calls it (a step's
``router/<slug>`` model or its ``router_score`` pre-gate): deleted, a router made later with the
same slug would silently be the pipeline's. The 409 names the pipelines (``metadata.pipelines``)
as it names keys. A router's delete checks and deletes on its locked row."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import KeyScope, Organization
from routing.models import Pipeline, PipelineVersion
from tests.factories import Tenants, key_client, key_make
from training import services
from training.models import Router

pytestmark = pytest.mark.django_db


def _pipeline(organization: Organization, slug: str, *steps: dict[str, Any]) -> Pipeline:
    pipeline = Pipeline.objects.create(organization=organization, slug=slug, name=slug.title())
    version_add(pipeline, *steps)
    return pipeline


def version_add(pipeline: Pipeline, *steps: dict[str, Any]) -> None:
    number = pipeline.versions.count() + 1
    pipeline.active_version = PipelineVersion.objects.create(
        pipeline=pipeline, number=number, kind="series", steps=list(steps)
    )
    pipeline.save(update_fields=["active_version"])


def test_a_router_a_pipeline_calls_is_not_deleted_nor_renamed(tenants: Tenants) -> None:
    organization = tenants.organization
    Router.objects.create(organization=organization, slug="support", candidates=["a", "b"])
    Router.objects.create(organization=organization, slug="supportive", candidates=["a", "b"])
    caller = _pipeline(organization, "caller", {"model": "test/gpt"}, {"model": "router/support"})
    gated = _pipeline(organization, "gated", {"model": "test/gpt", "pre_gate": {
        "type": "router_score", "router": "support", "min_score": 0.5}})  # fmt: skip
    _pipeline(organization, "other", {"model": "router/supportive"})
    manage = key_client(key_make(organization, scope=KeyScope.MANAGE))

    refused = manage.delete("/api/v1/routers/support")
    renamed = manage.patch("/api/v1/routers/support", {"slug": "help"}, format="json")

    # Deleted (204) and renamed (200) on the old code: the pipelines were not read.
    assert refused.status_code == renamed.status_code == 409, refused.content
    error = refused.json()["error"]
    assert error["param"] == "slug" and "before deleting" in error["message"]
    assert "caller (Caller)" in error["message"] and "Other" not in error["message"]
    assert error["metadata"] == {
        "keys": [],
        "pipelines": [{"slug": "caller", "name": "Caller"}, {"slug": "gated", "name": "Gated"}],
    }
    assert "before renaming" in renamed.json()["error"]["message"]
    assert Router.objects.filter(organization=organization, slug="support").exists()
    version_add(caller, {"model": "test/gpt"})
    still = manage.delete("/api/v1/routers/support")
    assert still.status_code == 409
    assert still.json()["error"]["metadata"]["pipelines"] == [{"slug": "gated", "name": "Gated"}]
    version_add(gated, {"model": "test/gpt"})  # an older version naming it is never served again
    deleted = manage.delete("/api/v1/routers/support")
    assert deleted.status_code == 204, deleted.content
    assert not Router.objects.filter(organization=organization, slug="support").exists()


def test_a_router_is_checked_and_deleted_on_its_locked_row(tenants: Tenants) -> None:
    router = Router.objects.create(organization=tenants.organization, slug="s", candidates=["a"])

    with CaptureQueriesContext(connection) as queries:
        services.router_delete(router=router)

    statements = [q["sql"] for q in queries.captured_queries]
    locks = [i for i, sql in enumerate(statements) if sql.endswith("FOR UPDATE")]
    reads = [i for i, sql in enumerate(statements) if '"training_trainingrun"' in sql]
    deletes = [
        i for i, sql in enumerate(statements) if sql.startswith('DELETE FROM "training_router"')
    ]
    # The old code read the runs and keys and deleted without a lock: a run started between
    # the check and the delete went with the router.
    assert locks and reads and deletes and locks[0] < min(reads) and max(reads) < deletes[0]
    assert '"training_router"' in statements[locks[0]]
