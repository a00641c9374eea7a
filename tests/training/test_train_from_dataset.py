""" "Train a router" on a dataset's page: admins only, at least two models, nothing half made."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import dashboard_client, organization_make
from tests.training.test_catalog_candidates import catalog
from training.models import Dataset, DatasetStatus, Router, TrainingRun

pytestmark = pytest.mark.django_db
__all__ = ["catalog"]


def ready_dataset(organization: Any) -> Dataset:
    return Dataset.objects.create(
        organization=organization,
        name="Evals",
        status=DatasetStatus.READY,
        rows=100,
        model_summary=[
            {"id": "openai/gpt-4o", "mean_score": 0.8, "mean_cost": None},
            {"id": "openai/gpt-4o-mini", "mean_score": 0.6, "mean_cost": None},
            {"id": "my-local-model", "mean_score": 0.5, "mean_cost": None},
        ],
    )


def test_the_form_ticks_the_catalog_models_and_flags_the_others(
    tenants: Any, catalog: None
) -> None:
    dataset = ready_dataset(tenants.organization)

    page = (
        dashboard_client(tenants.admin, tenants.organization)
        .get(f"/dashboard/datasets/{dataset.pk}/")
        .content.decode()
    )

    assert 'id="train-from-dataset"' in page and 'value="evals-router"' in page
    assert 'value="openai/gpt-4o" id="id_candidates_0" checked' in page
    assert 'value="my-local-model" id="id_candidates_2">' in page
    assert "not a catalog model" in page


def test_members_cannot_train_and_do_not_see_the_form(tenants: Any, catalog: None) -> None:
    dataset = ready_dataset(tenants.organization)
    member = dashboard_client(tenants.member, tenants.organization)

    page = member.get(f"/dashboard/datasets/{dataset.pk}/").content.decode()
    refused = member.post(
        f"/dashboard/datasets/{dataset.pk}/train",
        {
            "slug": "r",
            "candidates": ["openai/gpt-4o", "openai/gpt-4o-mini"],
            "default_tradeoff": "0.5",
        },
    )

    assert 'id="train-from-dataset"' not in page
    assert refused.status_code == 403 and not Router.objects.exists()


def test_one_model_is_refused_and_leaves_no_router(tenants: Any, catalog: None) -> None:
    dataset = ready_dataset(tenants.organization)

    page = dashboard_client(tenants.admin, tenants.organization).post(
        f"/dashboard/datasets/{dataset.pk}/train",
        {"slug": "r", "candidates": ["openai/gpt-4o"], "default_tradeoff": "0.5"},
    )

    assert page.status_code == 400
    assert "Pick at least two models" in page.content.decode()
    assert not Router.objects.exists() and not TrainingRun.objects.exists()


def test_another_organizations_dataset_is_404(tenants: Any, catalog: None) -> None:
    foreign = ready_dataset(organization_make())

    answer = dashboard_client(tenants.admin, tenants.organization).post(
        f"/dashboard/datasets/{foreign.pk}/train",
        {
            "slug": "r",
            "candidates": ["openai/gpt-4o", "openai/gpt-4o-mini"],
            "default_tradeoff": "0",
        },
    )

    assert answer.status_code == 404 and not Router.objects.exists()
