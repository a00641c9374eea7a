"""``SelectionSession.key`` and ``key_recorded`` (Not Diamond reports per key).

Non-atomic, so no step holds a lock past its own statement: the column is added without a
foreign key constraint (one would take a lock on ``accounts_apikey``, which the gateway's key
lookup updates on every request, until the migration commits), ``key_recorded`` is a catalogue
change (a constant ``DEFAULT``), and the index is built ``CONCURRENTLY`` (a plain ``CREATE
INDEX`` blocks every write to the sessions table for the whole build) — on PostgreSQL; SQLite
(``make run``'s embedded database) has no ``CONCURRENTLY`` and takes a plain index."""

import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    """``CREATE INDEX CONCURRENTLY`` on PostgreSQL, a plain index on other databases (Django's
    operation passes ``concurrently=True`` to every vendor's schema editor: SQLite's refuses it,
    and ``migrate`` failed there)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_forwards(
                self, app_label, schema_editor, from_state, to_state
            )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_backwards(
                self, app_label, schema_editor, from_state, to_state
            )


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
        AddIndexConcurrentlyOnPostgres(
            model_name="selectionsession",
            index=models.Index(fields=["key"], name="session_key"),
        ),
    ]
