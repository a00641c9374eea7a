"""What a person reads on run and router pages: stage names, attempts, endings, APGR and AIQ."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.factories import dashboard_client
from tests.training.conftest import csv_bytes, synthetic_frame
from tests.training.test_pages import trained
from training import execution, services
from training.models import RunStatus, TrainingRun

pytestmark = pytest.mark.django_db
__all__ = ["trained"]  # the fixture: a two-model router trained to version 1


def _queued_run(tenants: Any, trained: dict[str, Any]) -> TrainingRun:
    return services.training_run_start(
        router=trained["router"], dataset=trained["dataset"], options={"folds": 2}
    )


def _run_page(tenants: Any, run: TrainingRun) -> str:
    client = dashboard_client(tenants.member, tenants.organization)
    return client.get(f"/dashboard/training-runs/{run.pk}/").content.decode()


def test_a_running_run_shows_a_readable_stage_and_no_attempt_zero(
    tenants: Any, trained: dict[str, Any]
) -> None:
    run = _queued_run(tenants, trained)
    queued = _run_page(tenants, run)
    # What the worker writes mid-run (training.execution's progress writer).
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, stage="cross_validating", progress=0.4, attempts=1
    )

    running = _run_page(tenants, run)

    assert (
        "attempt 0" not in queued and "<span data-run-stage>Waiting for a worker</span>" in queued
    )
    assert "attempt" not in running.split("<h1>")[1].split("</p>")[0]
    assert "<span data-run-stage>Cross-validating</span>" in running
    assert '"cross_validating": "Cross-validating"' in running  # the live poller's labels


def test_a_cancelled_run_says_so_instead_of_zero_percent(
    tenants: Any, trained: dict[str, Any]
) -> None:
    run = services.training_run_cancel(run=_queued_run(tenants, trained))

    page = _run_page(tenants, run)

    assert "Cancelled before a worker started it." in page
    assert 'role="progressbar"' not in page and "data-run-percent" not in page


def test_versions_table_explains_apgr_and_aiq_and_why_apgr_is_missing(
    tenants: Any, trained: dict[str, Any]
) -> None:
    frame = synthetic_frame(90)
    frame["mid-model/score"] = (frame["math-model/score"] + frame["prose-model/score"]) // 2
    frame["mid-model/cost"] = 0.005
    dataset = services.dataset_create(
        organization=tenants.organization,
        name="three",
        upload=SimpleUploadedFile("three.csv", csv_bytes(frame)),
        columns=None,
        maximize=True,
    )
    services.dataset_validate(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    router = services.router_create(
        organization=tenants.organization, slug="three", name="Three", candidates=[]
    )
    run = services.training_run_start(router=router, dataset=dataset, options={"folds": 2})
    assert execution.training_run_execute(run_id=run.pk) == RunStatus.SUCCEEDED
    client = dashboard_client(tenants.member, tenants.organization)

    two = client.get("/dashboard/routers/support/").content.decode()
    three = client.get("/dashboard/routers/three/").content.decode()

    def apgr_cell(page: str) -> str:
        versions = page.split("<h2>Versions</h2>")[1].split("<tbody>")[1]
        return versions.split('<td class="num">')[1].split("</td>")[0]

    assert float(apgr_cell(two)) > 0
    assert "n/a (3 models)" in apgr_cell(three)
    assert "average performance gap recovered" in two and "zero router" in two
    assert "<td>Done</td>" in two and "<td>done</td>" not in two  # runs: readable stages
