"""Router, pipeline, provider key, dataset names and webhook descriptions stored before input
refused bidi overrides and invisible format characters are cleaned with
``routerhub.text.one_line`` (``routerhub.name_cleanup``); reversing is a no-op. Routers, datasets
and webhooks live in other apps: cleaned here, once, after their latest migrations."""

from typing import Any

from django.db import migrations

from routerhub.name_cleanup import names_clean

NAMES = [
    ("routing", "Pipeline", "name"),
    ("routing", "ProviderKey", "name"),
    ("training", "Router", "name"),
    ("training", "Dataset", "name"),
    ("webhooks", "WebhookEndpoint", "description"),
]


def routing_names_clean(apps: Any, schema_editor: Any) -> None:
    for app, model, field in NAMES:
        names_clean(apps.get_model(app, model), field)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("routing", "0012_selection_latency_and_model_categories"),
        ("training", "0005_routellm_calibration"),
        ("webhooks", "0001_webhook_endpoints_and_deliveries"),
    ]

    operations = [migrations.RunPython(routing_names_clean, migrations.RunPython.noop)]
