"""Organizations record their creator (ORGANIZATIONS_PER_PERSON_MAX counts what a person
created). Existing organizations are given the person of their founding membership: the one
``organization_create`` made with the organization, its earliest."""

from typing import Any

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def creators_backfill(apps: Any, schema_editor: Any) -> None:
    organization_model = apps.get_model("accounts", "Organization")
    membership_model = apps.get_model("accounts", "Membership")
    founding = membership_model.objects.filter(organization=OuterRef("pk")).order_by(
        "created_at", "pk"
    )
    organization_model.objects.filter(created_by__isnull=True).update(
        created_by=Subquery(founding.values("user")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_budget_aware_routing"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="organization",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="organizations_created",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(creators_backfill, migrations.RunPython.noop),
    ]
