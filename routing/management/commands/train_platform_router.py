"""``manage.py train_platform_router --dataset PATH``: train ``router/auto`` for every organization.

The dataset may use any layout of API.md (``<model>/score`` columns, or ``--columns`` with an
explicit mapping). Model ids should be catalog ids so that the gateway can call the choice;
others are still ranked by ``select`` but skipped when serving chat.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import Organization
from routing.routers import PLATFORM_ORGANIZATION_SLUG, PLATFORM_ROUTER_SLUG
from training import execution, services
from training.models import DatasetStatus, Router, RunStatus


class Command(BaseCommand):
    help = "Train (and activate) the platform router served as router/auto."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dataset", required=True, type=Path, help="CSV, JSONL or Parquet file"
        )
        parser.add_argument("--columns", help='JSON mapping, e.g. {"prompt": "q", "scores": {...}}')
        parser.add_argument("--minimize", action="store_true", help="lower scores are better")
        parser.add_argument("--test-dataset", type=Path, help="evaluate on this file instead of CV")

    def handle(self, *args: Any, **options: Any) -> None:
        columns = self._columns(options["columns"])
        organization, _ = Organization.objects.get_or_create(
            slug=PLATFORM_ORGANIZATION_SLUG, defaults={"name": "RouterHub platform"}
        )
        dataset = self._dataset(organization, options["dataset"], columns, not options["minimize"])
        run_options: dict[str, Any] = {}
        if options["test_dataset"]:
            test = self._dataset(
                organization, options["test_dataset"], columns, not options["minimize"]
            )
            run_options["test_dataset"] = test.pk
        router = Router.objects.filter(organization=organization, slug=PLATFORM_ROUTER_SLUG).first()
        if router is None:
            router = services.router_create(
                organization=organization,
                slug=PLATFORM_ROUTER_SLUG,
                name="Platform router",
                candidates=dataset.model_ids,
                auto_activate=True,
            )
        with transaction.atomic():
            run = services.training_run_start(router=router, dataset=dataset, options=run_options)
        # Run here rather than on a worker: an operator command should finish with its answer.
        status = execution.training_run_execute(run_id=run.pk, worker="manage.py")
        run.refresh_from_db()
        if status != RunStatus.SUCCEEDED or run.version is None:
            raise CommandError(f"Training failed: {run.error or status}")
        if router.active_version_id != run.version.pk:
            services.version_activate(router=router, number=run.version.number)
        metrics = ", ".join(f"{k}={v}" for k, v in sorted(run.version.metrics.items())[:6])
        self.stdout.write(f"router/auto is now version {run.version.number} ({metrics})")

    def _columns(self, raw: str | None) -> dict[str, Any] | None:
        if raw is None:
            return None
        try:
            columns = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--columns is not valid JSON: {exc}") from None
        if not isinstance(columns, dict):
            raise CommandError("--columns must be a JSON object")
        return columns

    def _dataset(
        self, organization: Organization, path: Path, columns: dict[str, Any] | None, maximize: bool
    ) -> Any:
        if not path.is_file():
            raise CommandError(f"No file at {path}.")
        upload = SimpleUploadedFile(path.name, path.read_bytes())
        with transaction.atomic():
            dataset = services.dataset_create(
                organization=organization,
                name=path.name,
                upload=upload,
                columns=columns,
                maximize=maximize,
            )
        dataset = services.dataset_validate(dataset_id=dataset.pk) or dataset
        dataset.refresh_from_db()
        if dataset.status != DatasetStatus.READY:
            problems = "; ".join(e["message"] for e in dataset.errors[:5])
            raise CommandError(f"{path.name} is {dataset.status}: {problems}")
        return dataset
