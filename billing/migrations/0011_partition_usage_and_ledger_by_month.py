"""Usage records and ledger entries partitioned by month of ``created_at`` (PostgreSQL;
``billing.partition_schema.table_partition``), their uniqueness moved to the guard tables of
0010 by triggers (on SQLite too, whose tables stay plain). The model state only loses the two
``unique=True``: Django keeps ``id`` as the primary key, the database's is ``(id, created_at)``.
Both tables are locked for the copy: measured in README (seconds per million rows)."""

from django.db import migrations, models

from billing.partition_schema import GUARD_BACKFILL, guard_triggers_install, table_partition
from billing.partitions import PARTITIONED

def partition(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for table in PARTITIONED:
                table_partition(cursor, table)
        for statement in GUARD_BACKFILL:  # rows written between 0010 and this lock
            cursor.execute(statement)
        guard_triggers_install(cursor, connection.vendor)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0010_usage_generation_and_ledger_idempotency"),
        ("routing", "0008_feedback_usage_generation"),
    ]

    operations = [
        migrations.AlterField(
            model_name="ledgerentry",
            name="idempotency_key",
            field=models.CharField(db_index=True, max_length=200),
        ),
        migrations.AlterField(
            model_name="usagerecord",
            name="generation_id",
            field=models.CharField(db_index=True, max_length=64),
        ),
        migrations.RunPython(partition)  # irreversible: no way back to one table,
    ]
