"""JSON nested deeper than ``MAX_JSON_DEPTH`` is refused on every way into a stored definition,
not only by the API's parser: the dashboard's pipeline forms (create and new version), the
shared ``pipeline_create``/``spec_validate`` path (UbiOps import, templates), the dataset form's
``columns``, and the lean ``/api/v1/routers/<slug>/select`` handler. Before, the forms' own
``json.loads`` let a 400-level gate (a 500) or ``response_format`` (stored; every call a 500)
through, and ``"[" * 20000`` (a ``RecursionError``) was a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from routerhub.body_limits import MAX_JSON_DEPTH
from routerhub.errors import BadRequest
from routing.models import CatalogModel, Pipeline
from routing.pipeline_api import pipeline_create
from tests.factories import dashboard_client
from tests.routing.world import World
from tests.security.test_deep_nesting import _schema

pytestmark = pytest.mark.django_db

TOO_DEEP = f"more than {MAX_JSON_DEPTH} levels"


@pytest.fixture
def catalog() -> None:
    for model in ("demo/small", "demo/large"):
        CatalogModel.objects.create(
            id=model, name=model, author="demo", context_length=8000, max_output=1000
        )


def _deep_definitions() -> dict[str, Any]:
    schema = _schema(400)
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    return {
        "gate": {"kind": "cascade", "steps": [
            {"model": "demo/small", "gate": {"type": "json_schema", "schema": schema}},
            {"model": "demo/large"}]},
        "response-format": {"kind": "series", "steps": [
            {"model": "demo/small", "response_format": response_format}]},
    }  # fmt: skip


@pytest.mark.usefixtures("catalog")
def test_the_dashboard_pipeline_forms_refuse_deep_json_with_a_form_error(tenants: Any) -> None:
    admin = dashboard_client(tenants.admin, tenants.organization)
    pipeline_create(tenants.organization, slug="chain", name="Chain",
                    definition={"kind": "series", "steps": [{"model": "demo/small"}]})  # fmt: skip
    texts = {name: json.dumps(spec) for name, spec in _deep_definitions().items()}
    texts["unparseable-brackets"] = "[" * 20000  # Python's json: RecursionError

    answers = {}
    for name, text in texts.items():
        created = admin.post("/dashboard/pipelines/", {"slug": f"d-{name}", "definition": text})
        added = admin.post("/dashboard/pipelines/chain/", {"definition": text})
        answers[name] = [(r.status_code, TOO_DEEP in r.content.decode()) for r in (created, added)]

    assert answers == {name: [(200, True), (200, True)] for name in texts}
    assert list(Pipeline.objects.values_list("slug", flat=True)) == ["chain"]
    assert Pipeline.objects.get().versions.count() == 1


@pytest.mark.usefixtures("catalog")
def test_pipeline_create_refuses_deep_definitions_for_every_caller(tenants: Any) -> None:
    # The UbiOps import and the templates create through pipeline_create, as API and dashboard.
    refused = {}
    for name, spec in _deep_definitions().items():
        with pytest.raises(BadRequest) as caught:
            pipeline_create(tenants.organization, slug=f"d-{name}", name="", definition=spec)
        refused[name] = TOO_DEEP in caught.value.message
    assert refused == dict.fromkeys(_deep_definitions(), True)
    assert not Pipeline.objects.exists()


def test_the_dataset_forms_columns_refuse_deep_json(tenants: Any) -> None:
    admin = dashboard_client(tenants.admin, tenants.organization)
    answers = []
    for columns in ("[" * 20000, json.dumps({"prompt": _schema(400)})):
        upload = SimpleUploadedFile("d.csv", b"prompt,demo/small/score\nhi,1\n", "text/csv")
        response = admin.post(
            "/dashboard/datasets/", {"file": upload, "name": "d", "columns": columns}
        )
        answers.append((response.status_code, TOO_DEEP in response.content.decode()))
    assert answers == [(200, True), (200, True)]


def test_the_lean_select_refuses_deep_json_as_the_drf_view(world: World) -> None:
    body = json.dumps({"prompt": "hi", "metadata": _schema(400)}).encode()
    response = httpx.post(
        f"{world.gateway_url}/api/v1/routers/auto/select",
        content=body,
        headers={"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert TOO_DEEP in response.json()["error"]["message"]
