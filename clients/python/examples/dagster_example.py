"""RouterHub in a Dagster pipeline: route a batch of prompts with a trained router, record the
batch's cost and model mix on the materialization, and retrain the router whenever a new
version of its dataset is uploaded.

Run it with ``dagster dev -f dagster_example.py`` (``pip install dagster-webserver``) after
setting ``ROUTERHUB_BASE_URL``, ``ROUTERHUB_API_KEY`` (an inference key) and
``ROUTERHUB_MANAGEMENT_KEY`` (a manage key). ``ROUTERHUB_ROUTER`` names the router (default
``support``) and ``ROUTERHUB_DATASET`` the dataset whose new versions retrain it (default
``support-evals``): upload a new version with
``hub.datasets.upload("evals.csv", name="support-evals")``.
"""

# No `from __future__ import annotations`: Dagster reads the config and resource types from
# the asset functions' annotations at definition time.
import os
from typing import Any

from dagster import (
    AssetExecutionContext,
    Config,
    Definitions,
    EnvVar,
    MaterializeResult,
    MetadataValue,
    RunConfig,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    define_asset_job,
    sensor,
)
from routerhub_client.dagster import RouterHubResource, RoutingTally

ROUTER = os.environ.get("ROUTERHUB_ROUTER", "support")
DATASET_NAME = os.environ.get("ROUTERHUB_DATASET", "support-evals")


class PromptsConfig(Config):
    prompts: list[str] = [
        "Compute 17 + 42 * 3.",
        "Write a short poem about the lantern at dawn.",
    ]


class RoutingConfig(Config):
    router: str = ROUTER
    tradeoff: float | None = None  # None: the router's default_tradeoff


class RetrainConfig(Config):
    dataset_id: int
    router: str = ROUTER


@asset
def prompts(config: PromptsConfig) -> list[str]:
    """The batch to route (in a real pipeline: read from a table or a file)."""
    return list(config.prompts)


@asset
def routed_answers(
    config: RoutingConfig, routerhub: RouterHubResource, prompts: list[str]
) -> MaterializeResult[list[dict[str, Any]]]:
    """Each prompt answered by the model the router picks; metadata: cost and model mix."""
    tally = RoutingTally()
    answers: list[dict[str, Any]] = []
    extra = {} if config.tradeoff is None else {"router": {"tradeoff": config.tradeoff}}
    with routerhub.inference_client() as client:
        for prompt in prompts:
            completion = client.chat.completions.create(
                model=f"router/{config.router}",
                messages=[{"role": "user", "content": prompt}],
                extra_body=extra,
            )
            tally.add(completion)
            answers.append({"prompt": prompt, "model": completion.model, "id": completion.id,
                            "answer": completion.choices[0].message.content})  # fmt: skip
    return MaterializeResult(value=answers, metadata=tally.metadata())


@asset
def trained_router(
    context: AssetExecutionContext, config: RetrainConfig, routerhub: RouterHubResource
) -> MaterializeResult[int]:
    """The router retrained on one dataset version; metadata: the version and its report."""
    with routerhub.management_client() as hub:
        run = hub.routers.train_and_wait(
            config.router,
            config.dataset_id,
            progress=lambda run: context.log.info(
                f"training run {run['id']}: {run['status']} {run['stage']} {run['progress']:.0%}"
            ),
        )
        version = int(run["version"] or 0)
        report = hub.routers.report(config.router, version)
    quality = {key: report[key] for key in ("apgr", "cpt50", "cpt80", "aiq") if key in report}
    return MaterializeResult(
        value=version,
        metadata={
            "router": config.router,
            "version": MetadataValue.int(version),
            "dataset_id": MetadataValue.int(config.dataset_id),
            "training_run": MetadataValue.int(run["id"]),
            "report": MetadataValue.json(quality),
        },
    )


retrain_job = define_asset_job("retrain_router", selection=[trained_router])


@sensor(job=retrain_job, minimum_interval_seconds=300)
def new_dataset_version(
    context: SensorEvaluationContext, routerhub: RouterHubResource
) -> SensorResult | SkipReason:
    """Request a retraining run when a newer ready version of DATASET_NAME has landed.

    The cursor is the id of the last dataset version trained on; the list is newest first.
    """
    last = int(context.cursor or 0)
    newest: int | None = None
    with routerhub.management_client() as hub:
        for dataset in hub.datasets.list():
            if dataset["id"] <= last:
                break
            if dataset["name"] == DATASET_NAME and dataset.get("status") == "ready":
                newest = dataset["id"]
                break
    if newest is None:
        return SkipReason(f"no new ready version of {DATASET_NAME!r} since dataset {last}")
    config = RunConfig(ops={"trained_router": RetrainConfig(dataset_id=newest)})
    request = RunRequest(run_key=f"{DATASET_NAME}-{newest}", run_config=config)
    return SensorResult(run_requests=[request], cursor=str(newest))


defs = Definitions(
    assets=[prompts, routed_answers, trained_router],
    jobs=[retrain_job],
    sensors=[new_dataset_version],
    resources={
        "routerhub": RouterHubResource(
            base_url=EnvVar("ROUTERHUB_BASE_URL"),
            api_key=EnvVar("ROUTERHUB_API_KEY"),
            management_api_key=EnvVar("ROUTERHUB_MANAGEMENT_KEY"),
        )
    },
)
