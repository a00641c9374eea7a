"""The unpartitioned homes of the two uniqueness guarantees (``billing.partition_schema``),
filled from the existing records and entries; ``Feedback`` moves onto ``UsageGeneration``
(routing 0008) before 0011 partitions the tables."""

import django.db.models.deletion
from django.db import migrations, models

from billing.partition_schema import GUARD_BACKFILL

def backfill(apps, schema_editor):
    for statement in GUARD_BACKFILL:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_apikey_is_playground"),
        ("billing", "0009_usagestep"),
    ]

    operations = [
        migrations.CreateModel(
            name="UsageGeneration",
            fields=[
                ("generation_id", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField(db_index=True)),
                (
                    "organization",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.organization",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="LedgerIdempotency",
            fields=[
                ("idempotency_key", models.CharField(max_length=200, primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField()),
            ],
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
