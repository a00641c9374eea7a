"""Routers and datasets whose model ids are not catalog models are flagged, with catalog ids to use."""

from __future__ import annotations

from typing import Any

import pytest

from routing.services import catalog_sync
from tests.factories import dashboard_client
from tests.routing.world import endpoint, model, provider
from training.models import Dataset, DatasetStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog() -> None:
    url = "http://127.0.0.1:9"
    catalog_sync(
        data={
            "providers": [provider("openai-test", "openai", url)],
            "models": [model("openai/gpt-4o"), model("openai/gpt-4o-mini")],
            "endpoints": [
                endpoint("openai/gpt-4o", "openai-test", "gpt-4o"),
                endpoint("openai/gpt-4o-mini", "openai-test", "gpt-4o-mini"),
            ],
        }
    )


def test_creating_a_router_over_non_catalog_ids_warns_and_suggests_catalog_ids(
    tenants: Any, catalog: None
) -> None:
    client = dashboard_client(tenants.admin, tenants.organization)

    page = client.post(
        "/dashboard/routers/",
        {"slug": "rl", "candidates": "gpt-4o, openai/gpt-4o-mini", "default_tradeoff": "0.5"},
        follow=True,
    ).content.decode()

    assert "Router created, but gpt-4o is not a catalog model" in page
    assert 'id="catalog-warning"' in page
    assert "<code>gpt-4o</code>: did you mean <code>openai/gpt-4o</code>" in page
    assert "<code>openai/gpt-4o-mini</code>: did you mean" not in page


def test_a_router_over_catalog_ids_gets_no_warning(tenants: Any, catalog: None) -> None:
    client = dashboard_client(tenants.admin, tenants.organization)

    page = client.post(
        "/dashboard/routers/",
        {"slug": "ok", "candidates": "openai/gpt-4o, openai/gpt-4o-mini", "default_tradeoff": "0"},
        follow=True,
    ).content.decode()

    assert "not a catalog model" not in page and 'id="catalog-warning"' not in page


def test_a_dataset_with_non_catalog_model_columns_is_flagged(tenants: Any, catalog: None) -> None:
    dataset = Dataset.objects.create(
        organization=tenants.organization,
        name="routellm",
        status=DatasetStatus.READY,
        rows=100,
        model_summary=[
            {"id": "gpt-4o", "mean_score": 0.8, "mean_cost": None},
            {"id": "openai/gpt-4o-mini", "mean_score": 0.6, "mean_cost": None},
        ],
    )

    page = (
        dashboard_client(tenants.member, tenants.organization)
        .get(f"/dashboard/datasets/{dataset.pk}/")
        .content.decode()
    )

    assert 'id="catalog-warning"' in page
    assert "<code>gpt-4o</code>: did you mean <code>openai/gpt-4o</code>" in page


def test_the_accepted_layouts_example_maps_catalog_ids(tenants: Any) -> None:
    page = (
        dashboard_client(tenants.admin, tenants.organization)
        .get("/dashboard/datasets/")
        .content.decode()
    )

    assert '"scores": {"openai/gpt-4o": "gpt-4-1106-preview"}' in page
    assert '"scores": {"gpt-4-1106-preview": "gpt-4-1106-preview"}' not in page
