"""Feedback points at the generation's guard row (``billing.UsageGeneration``, the same
generation id in the same column): the usage record table is about to be partitioned, and a
foreign key can only point at a unique key."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0010_usage_generation_and_ledger_idempotency"),
        ("routing", "0007_pipelines"),
    ]

    operations = [
        migrations.AlterField(
            model_name="feedback",
            name="usage",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="feedback",
                to="billing.usagegeneration",
            ),
        ),
    ]
