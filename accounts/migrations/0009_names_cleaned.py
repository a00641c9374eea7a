"""Organization and API key names stored before input refused bidi overrides and invisible
format characters are cleaned with ``routerhub.text.one_line`` (``routerhub.name_cleanup``);
reversing is a no-op (the characters removed are not kept)."""

from typing import Any

from django.db import migrations

from routerhub.name_cleanup import names_clean


def accounts_names_clean(apps: Any, schema_editor: Any) -> None:
    for model in ("Organization", "ApiKey"):
        names_clean(apps.get_model("accounts", model))


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("accounts", "0008_invitation_cancelled_at")]

    operations = [migrations.RunPython(accounts_names_clean, migrations.RunPython.noop)]
