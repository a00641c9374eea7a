"""Credit holds apart from the balance (``billing.models.CreditHold``).

A reservation used to add to ``billing_creditaccount.reserved``, the row settlement charges and
keeps locked until its commit; it now adds to ``billing_credithold.held``, a row settlement never
writes in the common case, and settlement adds the holds it releases to the account's monotonic
``released``. ``reserved`` becomes ``held - released``: the backfill carries each account's
``reserved`` into ``held`` with ``released = 0``. On PostgreSQL a trigger creates the hold row
with every account (also for raw inserts and COPY); elsewhere ``CreditAccount.save`` does.
"""

import django.db.models.deletion
from django.db import migrations, models

_BACKFILL = """
INSERT INTO billing_credithold (organization_id, held)
SELECT organization_id, reserved FROM billing_creditaccount
"""

_UNDO_BACKFILL = """
UPDATE billing_creditaccount SET reserved = (
    SELECT held FROM billing_credithold
    WHERE billing_credithold.organization_id = billing_creditaccount.organization_id
) - released
"""

_TRIGGER = """
CREATE FUNCTION billing_credithold_create() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO billing_credithold (organization_id, held) VALUES (NEW.organization_id, 0)
    ON CONFLICT (organization_id) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER billing_credithold_create AFTER INSERT ON billing_creditaccount
    FOR EACH ROW EXECUTE FUNCTION billing_credithold_create();
"""

_DROP_TRIGGER = """
DROP TRIGGER IF EXISTS billing_credithold_create ON billing_creditaccount;
DROP FUNCTION IF EXISTS billing_credithold_create();
"""


def trigger_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_TRIGGER)


def trigger_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_DROP_TRIGGER)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_budget_aware_routing"),
        ("billing", "0012_merge_partitioning_and_decision_log"),
    ]

    operations = [
        migrations.CreateModel(
            name="CreditHold",
            fields=[
                (
                    "account",
                    models.OneToOneField(
                        db_column="organization_id",
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="hold",
                        serialize=False,
                        to="billing.creditaccount",
                    ),
                ),
                ("held", models.DecimalField(decimal_places=8, default=0, db_default=0, max_digits=20)),
            ],
        ),
        migrations.AddField(
            model_name="creditaccount",
            name="released",
            field=models.DecimalField(decimal_places=8, default=0, db_default=0, max_digits=20),
        ),
        migrations.RunSQL(_BACKFILL, _UNDO_BACKFILL),
        migrations.RemoveConstraint(
            model_name="creditaccount",
            name="reserved_not_negative",
        ),
        migrations.RemoveField(
            model_name="creditaccount",
            name="reserved",
        ),
        migrations.AddConstraint(
            model_name="creditaccount",
            constraint=models.CheckConstraint(
                condition=models.Q(("released__gte", 0)), name="released_not_negative"
            ),
        ),
        migrations.AddConstraint(
            model_name="credithold",
            constraint=models.CheckConstraint(
                condition=models.Q(("held__gte", 0)), name="held_not_negative"
            ),
        ),
        migrations.RunPython(trigger_create, trigger_drop),
    ]
