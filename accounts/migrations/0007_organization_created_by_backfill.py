"""Existing organizations are given the person of their founding membership: the one
``organization_create`` made with the organization, its earliest.

Not atomic: each batch of ``BATCH`` primary keys is its own short transaction, so no lock is
held across the whole table (0006 added the column alone). Rerunnable: only organizations
still without a creator are written."""

from typing import Any

from django.db import migrations, transaction
from django.db.models import Max, OuterRef, Subquery

BATCH = 1000


def creators_backfill(apps: Any, schema_editor: Any, batch: int = BATCH) -> None:
    organization_model = apps.get_model("accounts", "Organization")
    membership_model = apps.get_model("accounts", "Membership")
    founding = membership_model.objects.filter(organization=OuterRef("pk")).order_by(
        "created_at", "pk"
    )
    top = organization_model.objects.aggregate(top=Max("pk"))["top"] or 0
    for start in range(0, top, batch):
        with transaction.atomic():
            organization_model.objects.filter(
                pk__gt=start, pk__lte=start + batch, created_by__isnull=True
            ).update(created_by=Subquery(founding.values("user")[:1]))


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("accounts", "0006_organization_created_by")]

    operations = [migrations.RunPython(creators_backfill, migrations.RunPython.noop)]
