"""``Feedback`` moves to ``routing`` (state only: the table ``billing_feedback`` stays as it is),
and usage records name their router by primary key (``router_id``; backfilled by routing's
``0004_feedback``, which can see the routers)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0005_reservation_state_free"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Feedback")],
            database_operations=[],
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="router_id",
            field=models.BigIntegerField(blank=True, db_index=True, null=True),
        ),
    ]
