"""The pipeline dashboard pages (issue 17): admins create pipelines and post new versions through
a JSON editor whose errors are the API's own, members read; each kind is drawn as boxes and
arrows, and a definition of a kind the page does not know still shows its steps."""

from __future__ import annotations

import json
from typing import Any

import pytest

from routing.models import CatalogModel, Pipeline, PipelineVersion
from routing.pipeline_api import pipeline_create
from tests.factories import dashboard_client

pytestmark = pytest.mark.django_db

LIST = "/dashboard/pipelines/"


@pytest.fixture(autouse=True)
def catalog() -> None:
    for model in ("demo/small", "demo/large"):
        CatalogModel.objects.create(
            id=model, name=model, author="demo", context_length=8000, max_output=1000
        )


def definition(kind: str, steps: list[dict[str, Any]]) -> str:
    return json.dumps({"kind": kind, "steps": steps})


def test_an_admin_creates_a_cascade_and_sees_its_steps_as_a_chain(tenants: Any) -> None:
    admin = dashboard_client(tenants.admin, tenants.organization)
    steps = [{"model": "demo/small", "gate": {"type": "json"}}, {"model": "demo/large"}]

    created = admin.post(
        LIST, {"slug": "cheap-first", "name": "", "definition": definition("cascade", steps)}
    )

    assert created.status_code == 302 and created["Location"] == "/dashboard/pipelines/cheap-first/"
    html = admin.get(created["Location"]).content.decode()
    assert "pipeline/cheap-first" in html and "Version 1: cascade" in html
    assert html.count('class="pipe-box"') == 2
    assert "passes if the answer is JSON" in html and "gate fails or step skipped" in html
    # No router is trained: the report says what it needs instead of drawing a chart.
    assert "Train a router on a dataset" in html and "<svg" not in html
    assert "cheap-first" in admin.get(LIST).content.decode()


def test_the_apis_validation_error_is_shown_next_to_the_json_editor(tenants: Any) -> None:
    admin = dashboard_client(tenants.admin, tenants.organization)

    unknown = admin.post(
        LIST, {"slug": "p", "definition": definition("cascade", [{"model": "x/y"}])}
    )
    broken = admin.post(LIST, {"slug": "q", "definition": '{"kind": "cascade", "steps": ['})

    assert unknown.status_code == 200
    assert "unknown model &#x27;x/y&#x27;. Known models: demo/large, demo/small" in (
        unknown.content.decode()
    )
    assert "Not valid JSON" in broken.content.decode()
    assert not Pipeline.objects.exists()


def test_a_new_version_from_the_page_becomes_active(tenants: Any) -> None:
    pipeline_create(tenants.organization, slug="chain", name="Chain", definition={
        "kind": "series", "steps": [{"model": "demo/small"}, {"model": "demo/large"}]})  # fmt: skip
    admin = dashboard_client(tenants.admin, tenants.organization)
    steps = [{"model": "demo/small"}, {"model": "demo/large", "template": "Refine: {previous}"}]

    posted = admin.post("/dashboard/pipelines/chain/", {"definition": definition("series", steps)})

    assert posted.status_code == 302
    html = admin.get("/dashboard/pipelines/chain/").content.decode()
    assert "Version 2: series" in html and "prompt: Refine: {previous}" in html
    assert "answer as {previous}" in html and "v1" in html and "v2" in html
    assert "cascade-report" not in html  # only a cascade has a report


def test_members_read_pipelines_but_cannot_change_them(tenants: Any) -> None:
    pipeline_create(tenants.organization, slug="mine", name="", definition={
        "kind": "cascade", "steps": [{"model": "demo/small"}, {"model": "demo/large"}]})  # fmt: skip
    member = dashboard_client(tenants.member, tenants.organization)
    body = {"definition": definition("cascade", [{"model": "demo/large"}])}

    page = member.get("/dashboard/pipelines/mine/").content.decode()
    assert "pipeline/mine" in page and "Save as new version" not in page
    assert "Create pipeline" not in member.get(LIST).content.decode()
    assert member.post("/dashboard/pipelines/mine/", body).status_code == 403
    assert member.post(LIST, {"slug": "theirs", **body}).status_code == 403
    assert PipelineVersion.objects.count() == 1


def test_a_parallel_or_unknown_kind_is_drawn_without_failing(tenants: Any) -> None:
    pipeline = Pipeline.objects.create(organization=tenants.organization, slug="fan", name="Fan")
    steps = [{"model": "demo/small", "timeout_ms": 800}, {"model": "demo/large"}]
    version = PipelineVersion.objects.create(
        pipeline=pipeline, number=1, kind="parallel", steps=steps
    )
    pipeline.active_version = version
    pipeline.save()
    admin = dashboard_client(tenants.admin, tenants.organization)

    fan = admin.get("/dashboard/pipelines/fan/").content.decode()
    assert "pipe-fan" in fan and "fan out" in fan and "timeout_ms: 800" in fan

    PipelineVersion.objects.filter(pk=version.pk).update(kind="someday")
    listed = admin.get("/dashboard/pipelines/fan/").content.decode()
    assert "<ol>" in listed and "1. demo/small" in listed
