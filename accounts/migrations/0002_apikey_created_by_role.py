"""API keys record the role their creator acted with (security finding 2).

Existing keys: a creator who is still a member gets their current role recorded (the best the
data says about the role they created it with); a creator who already left the organization has
their keys revoked, as removing a member now does; a key with no recorded creator (made through a
management key, or whose creator was deleted) keeps ``NULL`` and acts with the member role, the
least privilege: it can still call the inference API but no longer write anything an admin or
owner may (``accounts.keys.key_role``).
"""

from typing import Any

from django.db import migrations, models
from django.db.models import OuterRef, Subquery
from django.utils import timezone


def record_creator_roles(apps: Any, schema_editor: Any) -> None:
    ApiKey = apps.get_model("accounts", "ApiKey")
    Membership = apps.get_model("accounts", "Membership")
    creator_role = Membership.objects.filter(
        user=OuterRef("created_by"), organization=OuterRef("organization")
    ).values("role")[:1]
    with_creator = ApiKey.objects.filter(created_by__isnull=False)
    with_creator.update(created_by_role=Subquery(creator_role))
    with_creator.filter(created_by_role__isnull=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="created_by_role",
            field=models.CharField(
                blank=True,
                choices=[("owner", "Owner"), ("admin", "Admin"), ("member", "Member")],
                help_text="The role its creator acted with; the key never acts above it (keys.key_role).",
                max_length=10,
                null=True,
            ),
        ),
        migrations.RunPython(record_creator_roles, migrations.RunPython.noop),
    ]
