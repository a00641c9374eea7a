"""No decision waits for a router version to load after an activation, in any serving process.

Loads are counted by the process that does them (``routerhub_router_version_loads_total``, by
``path``): "request" when a decision waited for storage, "warmup" when it was loaded ahead.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from tests.routing.servers import poll
from tests.routing.world import World
from tests.serving.test_activation import second_worker
from tests.serving.test_router_serving import CHEAP, DEAR, MATH_PROMPT, train_router
from tests.training.conftest import csv_bytes, synthetic_frame
from tests.training.helpers import upload

pytestmark = pytest.mark.usefixtures("eager_celery", "media")
__all__ = ["second_worker"]
LOADS = "routerhub_router_version_loads_total"


def train_second_version(manage: APIClient) -> None:
    """Version 2 of router/support, not active: it learns DEAR is the one right on arithmetic."""
    swapped = synthetic_frame(rows=180, seed=1).rename(
        columns=lambda c: c.replace("math-model", DEAR).replace("prose-model", CHEAP)
    )
    dataset = upload(manage, csv_bytes(swapped), filename="swapped.csv").json()
    run = manage.post("/api/v1/routers/support/train", {"dataset": dataset["id"]}, format="json")
    assert manage.get(f"/api/v1/training-runs/{run.json()['id']}").json()["status"] == "succeeded"


def select(base_url: str, key: str) -> dict[str, Any]:
    response = httpx.post(
        f"{base_url}/api/v1/routers/support/select",
        headers={"Authorization": f"Bearer {key}"},
        json={"messages": [{"role": "user", "content": MATH_PROMPT}], "tradeoff": 0},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def loads_here(path: str) -> float:
    return REGISTRY.get_sample_value(LOADS, {"path": path}) or 0.0


def loads_in(base_url: str, path: str) -> float:
    """The counter of another process, from its /metrics."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == LOADS and sample.labels == {"path": path}:
                return sample.value
    return 0.0


def test_activating_loads_the_version_before_answering(
    world: World, fast_router_reload: None
) -> None:
    manage, _ = train_router(world)
    train_second_version(manage)
    assert select(world.gateway_url, world.key)["version"] == 1
    request_loads = loads_here("request")

    activated = manage.post("/api/v1/routers/support/versions/2/activate")

    assert activated.status_code == 200, activated.json()
    from training.models import RouterVersion
    from training.predictor import predictor_is_loaded

    assert predictor_is_loaded(RouterVersion.objects.get(router__slug="support", number=2))
    first_on_v2 = poll(lambda: (d := select(world.gateway_url, world.key))["version"] == 2 and d)
    assert first_on_v2["chosen"] == DEAR
    assert loads_here("request") == request_loads


def test_a_worker_decides_with_the_loaded_version_until_an_activated_one_is_ready(
    world: World, fast_router_reload: None
) -> None:
    manage, _ = train_router(world)
    train_second_version(manage)
    assert select(world.gateway_url, world.key)["version"] == 1
    request_loads = loads_here("request")
    from training.models import Router, RouterVersion

    # Activated by another process (as a Celery worker's auto-activation is): nothing has
    # loaded version 2 into this one.
    version = RouterVersion.objects.get(router__slug="support", number=2)
    Router.objects.filter(slug="support").update(
        active_version=version, activated_at=timezone.now()
    )

    versions = set()
    deadline = time.monotonic() + 30  # ends as soon as version 2 serves
    while 2 not in versions and time.monotonic() < deadline:
        versions.add(select(world.gateway_url, world.key)["version"])

    assert 2 in versions
    assert loads_here("request") == request_loads


def test_other_workers_load_an_activated_version_before_their_next_request(
    world: World, second_worker: str
) -> None:
    manage, _ = train_router(world)
    train_second_version(manage)
    assert select(second_worker, world.key)["version"] == 1  # the router is served there
    request_loads, warmups = loads_in(second_worker, "request"), loads_in(second_worker, "warmup")

    manage.post("/api/v1/routers/support/versions/2/activate")

    # No request reaches that worker until it has loaded version 2 on its own.
    poll(lambda: loads_in(second_worker, "warmup") > warmups, timeout=10)
    first_on_v2 = select(second_worker, world.key)
    assert (first_on_v2["version"], first_on_v2["chosen"]) == (2, DEAR)
    assert loads_in(second_worker, "request") == request_loads
