"""Demo data for ``make run``: the demo organization's router, trained on a shipped dataset.

``training/demo-prompts.csv`` is synthetic (150 prompts of three kinds: arithmetic, writing and
both) with scores and per-request costs for the three simulated demo models, so the first look
at the demo login shows a trained router, its report and its decisions. Training runs here, in
the seeding process (a few seconds), once: a router that already has a version is left alone.
"""

from __future__ import annotations

from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Organization
from training import execution, services
from training.models import Dataset, DatasetStatus, Router, RunStatus

DEMO_DATASET = Path(__file__).with_name("demo-prompts.csv")
DEMO_ROUTER_SLUG = "demo-router"
DEMO_CANDIDATES = ["demo/small", "demo/medium", "demo/large"]


def seed_demo_router(organization: Organization) -> None:
    """Upload the demo dataset and train ``router/demo-router`` on it, unless it is trained."""
    router = Router.objects.filter(organization=organization, slug=DEMO_ROUTER_SLUG).first()
    if router is not None and router.active_version_id is not None:
        return
    dataset = Dataset.objects.filter(
        organization=organization, name="Demo prompts", status=DatasetStatus.READY
    ).first()
    if dataset is None:
        dataset = services.dataset_create(
            organization=organization,
            name="Demo prompts",
            upload=SimpleUploadedFile(DEMO_DATASET.name, DEMO_DATASET.read_bytes()),
            columns=None,
            maximize=True,
        )
        dataset = services.dataset_validate(dataset_id=dataset.pk) or dataset
    if router is None:
        router = services.router_create(
            organization=organization,
            slug=DEMO_ROUTER_SLUG,
            name="Demo router (simulated models)",
            candidates=DEMO_CANDIDATES,
        )
    run = services.training_run_start(router=router, dataset=dataset, options={"folds": 3})
    status = execution.training_run_execute(run_id=run.pk, worker="seed_demo")
    if status != RunStatus.SUCCEEDED:
        run.refresh_from_db()
        raise RuntimeError(f"Training the demo router failed: {run.error}")
