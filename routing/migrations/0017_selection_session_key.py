"""``SelectionSession.key`` and ``key_recorded`` (Not Diamond reports per key).

Non-atomic, so no step holds a lock past its own statement: the column is added without a
foreign key constraint (one would take a lock on ``accounts_apikey``, which the gateway's key
lookup updates on every request, until the migration commits), ``key_recorded`` is a catalogue
change (a constant ``DEFAULT``), and the index is built ``CONCURRENTLY`` (a plain ``CREATE
INDEX`` blocks every write to the sessions table for the whole build)."""

import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("accounts", "0013_invitation_mail_ticket"),
        ("routing", "0016_endpoint_long_context"),
    ]

    operations = [
        migrations.AddField(
            model_name="selectionsession",
            name="key",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="accounts.apikey",
            ),
        ),
        migrations.AddField(
            model_name="selectionsession",
            name="key_recorded",
            field=models.BooleanField(db_default=False, default=True),
        ),
        AddIndexConcurrently(
            model_name="selectionsession",
            index=models.Index(fields=["key"], name="session_key"),
        ),
    ]
