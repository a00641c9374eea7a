"""``SelectionSession.feedback_key_id`` and ``feedback_key_recorded``: who gave a session's
feedback, so an inference key does not replace a person's or a management key's (as native
feedback, ``routing.feedback.feedback_replace_check``).

Both are catalogue changes on PostgreSQL (a nullable column without default, and a constant
``DEFAULT``): no table rewrite, no lock held past the statement. Sessions from before keep
``feedback_key_recorded`` false, as old ones keep ``key_recorded``."""

from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("routing", "0017_selection_session_key"),
    ]

    operations = [
        migrations.AddField(
            model_name="selectionsession",
            name="feedback_key_id",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="selectionsession",
            name="feedback_key_recorded",
            field=models.BooleanField(db_default=False, default=True),
        ),
    ]
