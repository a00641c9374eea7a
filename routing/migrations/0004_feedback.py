"""``Feedback`` joins routing, which writes and reads it (state only: its table keeps the name
``billing_feedback``), and usage records served by a router get that router's id."""

import django.db.models.deletion
from django.db import migrations, models

PLATFORM_ORGANIZATION_SLUG = "routerhub-platform"  # routing.routers, frozen for this migration
PLATFORM_ROUTER_SLUG = "auto"


def usage_router_ids(apps, schema_editor):
    """Name each routed usage record's router by id: the router of that slug in the record's
    organization, and for ``router/auto`` the platform's. Records of routers deleted since keep
    no id (nothing to join them to)."""
    usage = apps.get_model("billing", "UsageRecord").objects.filter(
        router__startswith="router/", router_id__isnull=True
    )
    routers = apps.get_model("training", "Router").objects
    for organization_id, name in usage.values_list("organization_id", "router").distinct():
        slug = name.removeprefix("router/")
        owner = {"organization_id": organization_id}
        if slug == PLATFORM_ROUTER_SLUG:
            owner = {"organization__slug": PLATFORM_ORGANIZATION_SLUG}
        router_id = routers.filter(slug=slug, **owner).values_list("pk", flat=True).first()
        if router_id is not None:
            usage.filter(organization_id=organization_id, router=name).update(router_id=router_id)


def content_type_move(apps, schema_editor):
    content_types = apps.get_model("contenttypes", "ContentType").objects
    if not content_types.filter(app_label="routing", model="feedback").exists():
        content_types.filter(app_label="billing", model="feedback").update(app_label="routing")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("billing", "0006_feedback_to_routing_usage_router_id"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("routing", "0003_catalog_embeddings"),
        ("training", "0002_dataset_validation_attempts_one_active_run"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Feedback",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("score", models.FloatField(help_text="0 (bad) … 1 (good).")),
                        ("comment", models.TextField(blank=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        ("key", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="accounts.apikey")),
                        ("organization", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="accounts.organization")),
                        ("usage", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name="feedback", to="billing.usagerecord", to_field="generation_id")),
                    ],
                    options={"db_table": "billing_feedback"},
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(usage_router_ids, migrations.RunPython.noop),
        migrations.RunPython(content_type_move, migrations.RunPython.noop),
    ]
