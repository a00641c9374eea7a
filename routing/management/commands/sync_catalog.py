"""``manage.py sync_catalog [--file PATH]``: load the provider catalog (idempotent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from routing.services import CATALOG_FILE, catalog_sync_file


class Command(BaseCommand):
    help = "Create or update providers, models and endpoints from routing/catalog.toml."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--file", type=Path, default=CATALOG_FILE)

    def handle(self, *args: Any, **options: Any) -> None:
        result = catalog_sync_file(path=options["file"])
        self.stdout.write(
            f"Catalog synced: {result.providers} providers, {result.models} models, {result.endpoints} endpoints."
        )
