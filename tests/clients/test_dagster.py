"""The Dagster example (clients/python/examples/dagster_example.py) run in-process against the
in-process server: routed answers with cost and model mix as metadata, and the sensor that
retrains the router when a new dataset version lands."""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from dagster import SensorResult, SkipReason, build_sensor_context, materialize
from routerhub_client import RouterHub
from routerhub_client.dagster import RouterHubResource

from accounts.models import KeyScope
from billing.models import UsageRecord
from tests.clients.conftest import CHEAP, DEAR, MATH_PROMPT, PROSE_PROMPT, support_frame
from tests.routing.world import World

EXAMPLE = Path(__file__).resolve().parents[2] / "clients/python/examples/dagster_example.py"
pytestmark = pytest.mark.usefixtures("eager_celery", "media")


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dagster_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def resource(world: World) -> RouterHubResource:
    return RouterHubResource(
        base_url=world.gateway_url,
        api_key=world.key,
        management_api_key=world.key_for(scope=KeyScope.MANAGE),
        max_retries=0,
    )


@pytest.fixture
def hub(resource: RouterHubResource) -> Any:
    with resource.management_client() as client:
        yield client


def _upload_version(hub: RouterHub, seed: int) -> int:
    name = example().DATASET_NAME
    return int(hub.datasets.upload(support_frame(seed=seed), name=name)["id"])


def test_routed_answers_record_cost_and_model_mix(
    world: World, resource: RouterHubResource, hub: RouterHub
) -> None:
    module = example()
    hub.routers.create(module.ROUTER, candidates=[CHEAP, DEAR])
    hub.routers.train_and_wait(module.ROUTER, _upload_version(hub, 0), interval=0.05)
    batch = [MATH_PROMPT, PROSE_PROMPT, "Compute 23 + 11 * 4.", PROSE_PROMPT + " Again."]

    run_config = {
        "ops": {
            "prompts": {"config": {"prompts": batch}},
            "routed_answers": {"config": {"tradeoff": 0.0}},
        }
    }

    result = materialize(
        [module.prompts, module.routed_answers],
        resources={"routerhub": resource},
        run_config=run_config,
    )

    assert result.success
    answers = result.output_for_node("routed_answers")
    metadata = result.asset_materializations_for_node("routed_answers")[0].metadata
    assert [a["model"] for a in answers] == [CHEAP, DEAR, CHEAP, DEAR]
    assert metadata["model_mix"].value == {CHEAP: 0.5, DEAR: 0.5}
    assert metadata["model_counts"].value == {CHEAP: 2, DEAR: 2}
    assert metadata["requests"].value == 4
    billed = sum(world.usage_record(a["id"]).cost for a in answers)
    assert billed > 0
    assert Decimal(str(metadata["cost_usd"].value)) == billed.quantize(Decimal("1e-8"))
    assert UsageRecord.objects.filter(router="router/support").count() == 4


def test_the_sensor_retrains_when_a_new_dataset_version_lands(
    resource: RouterHubResource, hub: RouterHub
) -> None:
    module = example()
    hub.routers.create(module.ROUTER, candidates=[CHEAP, DEAR])
    hub.datasets.upload(support_frame(rows=40), name="unrelated")
    first = _upload_version(hub, 0)

    fired = module.new_dataset_version(build_sensor_context(resources={"routerhub": resource}))
    assert isinstance(fired, SensorResult) and fired.cursor == str(first)
    request = fired.run_requests[0]
    trained = materialize(
        [module.trained_router], resources={"routerhub": resource}, run_config=request.run_config
    )
    quiet = module.new_dataset_version(
        build_sensor_context(cursor=fired.cursor, resources={"routerhub": resource})
    )
    second = _upload_version(hub, 1)
    again = module.new_dataset_version(
        build_sensor_context(cursor=fired.cursor, resources={"routerhub": resource})
    )

    assert trained.success
    metadata = trained.asset_materializations_for_node("trained_router")[0].metadata
    assert metadata["version"].value == 1 and metadata["dataset_id"].value == first
    assert "apgr" in metadata["report"].value
    assert hub.routers.get(module.ROUTER)["active_version"] == 1
    assert isinstance(quiet, SkipReason)
    assert isinstance(again, SensorResult) and again.cursor == str(second)
    assert again.run_requests[0].run_key == f"{module.DATASET_NAME}-{second}"
