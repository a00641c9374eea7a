"""Organizations record their creator (ORGANIZATIONS_PER_PERSON_MAX counts what a person
created). The column only: nullable, no default, so adding it rewrites nothing and holds its
ACCESS EXCLUSIVE lock for an instant. Existing organizations are filled in by 0007, in batches
outside this migration's transaction."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


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
    ]
