"""``manage.py train_platform_router --dataset PATH``: train ``router/auto`` for every organization.

The dataset may use any layout of API.md (``<model>/score`` columns, or ``--columns`` with an
explicit mapping). Model ids should be catalog ids so that the gateway can call the choice;
others are still ranked by ``select`` but skipped when serving chat.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Membership, Organization
from routing.routers import PLATFORM_ORGANIZATION_SLUG, PLATFORM_ROUTER_SLUG
from training import serving


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
        if Membership.objects.filter(organization=organization).exists():
            # A person's organization that took the slug before it was reserved: its owners
            # would read the platform's data and change what router/auto serves.
            raise CommandError(
                f"The organization '{PLATFORM_ORGANIZATION_SLUG}' has members: a person created "
                "it, not this command. Give it another slug (Django admin) and run this again."
            )
        maximize = not options["minimize"]
        dataset = self._dataset(organization, options["dataset"], columns, maximize)
        run_options: dict[str, Any] = {}
        if options["test_dataset"]:
            test = self._dataset(organization, options["test_dataset"], columns, maximize)
            run_options["test_dataset"] = test.pk
        # Run here rather than on a worker: an operator command should finish with its answer.
        try:
            version = serving.router_train_now(
                organization=organization,
                slug=PLATFORM_ROUTER_SLUG,
                name="Platform router",
                dataset=dataset,
                options=run_options,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        metrics = ", ".join(f"{k}={v}" for k, v in sorted(version.metrics.items())[:6])
        self.stdout.write(f"router/auto is now version {version.number} ({metrics})")

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
        try:
            return serving.dataset_from_file(
                organization=organization,
                name=path.name,
                content=path.read_bytes(),
                columns=columns,
                maximize=maximize,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
