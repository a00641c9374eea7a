"""Dashboard pages for datasets, routers, runs and reports (server-rendered, work without JS)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.factories import dashboard_client
from tests.training.conftest import csv_bytes, synthetic_frame
from training import execution, services
from training.models import Dataset, RunStatus

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def trained(tenants: Any, media: Any) -> dict[str, Any]:
    dataset = services.dataset_create(
        organization=tenants.organization,
        name="evals",
        upload=SimpleUploadedFile("evals.csv", csv_bytes(synthetic_frame(90))),
        columns=None,
        maximize=True,
    )
    services.dataset_validate(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    router = services.router_create(
        organization=tenants.organization, slug="support", name="Support", candidates=[]
    )
    run = services.training_run_start(router=router, dataset=dataset, options={"folds": 2})
    assert execution.training_run_execute(run_id=run.pk) == RunStatus.SUCCEEDED
    return {"dataset": dataset, "router": router, "run": run}


def test_plain_form_upload_without_javascript_lands_on_the_dataset_page(
    tenants: Any, media: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    client = _client(tenants.admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/dashboard/datasets/",
            {
                "file": SimpleUploadedFile("e.csv", csv_bytes(synthetic_frame(40))),
                "name": "e",
                "maximize": "on",
            },
        )
    dataset = Dataset.objects.get(organization=tenants.organization)
    assert response.status_code == 302
    assert response["Location"] == f"/dashboard/datasets/{dataset.pk}/"
    page = client.get(response["Location"]).content.decode()
    assert "ready" in page and "math-model" in page


def test_datasets_page_shows_the_upload_form_with_a_progress_bar_to_admins_only(
    tenants: Any, trained: dict[str, Any]
) -> None:
    admin_page = _client(tenants.admin).get("/dashboard/datasets/").content.decode()
    member_page = _client(tenants.member).get("/dashboard/datasets/").content.decode()
    assert 'data-upload-api="/api/v1/datasets"' in admin_page and 'role="progressbar"' in admin_page
    assert "evals" in member_page and "data-upload-api" not in member_page


def test_invalid_dataset_page_lists_row_and_column_errors(tenants: Any, media: Any) -> None:
    frame = synthetic_frame(40)
    frame["math-model/score"] = frame["math-model/score"].astype(object)
    frame.loc[4, "math-model/score"] = "maybe"
    dataset = services.dataset_create(
        organization=tenants.organization,
        name="bad",
        upload=SimpleUploadedFile("bad.csv", csv_bytes(frame)),
        columns=None,
        maximize=True,
    )
    services.dataset_validate(dataset_id=dataset.pk)
    page = _client(tenants.member).get(f"/dashboard/datasets/{dataset.pk}/").content.decode()
    assert "Problems to fix" in page
    assert "&#x27;maybe&#x27; is not a score" in page and "<code>math-model/score</code>" in page


def test_router_page_draws_the_active_versions_cost_quality_chart(
    tenants: Any, trained: dict[str, Any]
) -> None:
    page = _client(tenants.member).get("/dashboard/routers/support/").content.decode()
    assert '<svg class="chart"' in page
    assert page.count('class="model-point"') >= 2  # each single model, plus the legend
    assert "<polyline" in page
    assert "http://" not in page.split('<svg class="chart"')[1].split("</svg>")[0].replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )


def test_version_report_page_shows_baselines_and_curve(
    tenants: Any, trained: dict[str, Any]
) -> None:
    page = _client(tenants.member).get("/dashboard/routers/support/versions/1/").content.decode()
    assert "Oracle" in page and "Tradeoff curve" in page and "AIQ" in page


def test_run_page_polls_the_api_for_live_progress(tenants: Any, trained: dict[str, Any]) -> None:
    run = trained["run"]
    page = _client(tenants.member).get(f"/dashboard/training-runs/{run.pk}/").content.decode()
    assert f'data-poll-run="/api/v1/training-runs/{run.pk}"' in page
    assert "succeeded" in page and "see its report" in page


def test_admin_can_train_and_activate_from_the_router_page(
    tenants: Any, trained: dict[str, Any]
) -> None:
    client = _client(tenants.admin)
    response = client.post(
        "/dashboard/routers/support/", {"dataset": trained["dataset"].pk, "folds": 2}
    )
    assert response.status_code == 302 and "/dashboard/training-runs/" in response["Location"]
    new_run = trained["router"].runs.order_by("-pk").first()
    assert execution.training_run_execute(run_id=new_run.pk) == RunStatus.SUCCEEDED
    activated = client.post("/dashboard/routers/support/versions/2/activate")
    assert activated.status_code == 302
    trained["router"].refresh_from_db()
    assert trained["router"].active_version.number == 2


def test_members_cannot_post_and_outsiders_get_404(tenants: Any, trained: dict[str, Any]) -> None:
    member = _client(tenants.member)
    assert (
        member.post("/dashboard/routers/", {"slug": "x", "default_tradeoff": 0.5}).status_code
        == 403
    )
    outsider = _client(tenants.outsider)
    run, dataset = trained["run"], trained["dataset"]
    for url in (
        f"/dashboard/datasets/{dataset.pk}/",
        "/dashboard/routers/support/",
        "/dashboard/routers/support/versions/1/",
        f"/dashboard/training-runs/{run.pk}/",
    ):
        assert outsider.get(url).status_code == 404, url


def test_router_form_shows_the_apis_errors_that_name_no_field_of_the_form(
    tenants: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """routerhub.api_forms puts a serializer error on a field the form lacks (or on none) in the
    form's non-field errors: the page shows them, not only the per-field ones."""
    from rest_framework import serializers

    from training.serializers import RouterInput
    from training.views import RouterForm

    class Refusing(RouterInput):
        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            raise serializers.ValidationError("this pair of settings is refused as a whole")

    monkeypatch.setattr(RouterForm, "api_input", lambda self: Refusing)
    admin = dashboard_client(tenants.admin, tenants.organization)

    page = admin.post("/dashboard/routers/", {"slug": "pair", "default_tradeoff": "0.5"})

    assert page.status_code == 200
    assert "this pair of settings is refused as a whole" in page.content.decode()
