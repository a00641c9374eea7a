from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from billing import starter_verification  # noqa: F401  (connects the grant's receivers)
        from billing.partition_schema import sqlite_guards_restore

        # SQLite drops a table's triggers when a migration rebuilds the table: put them back.
        post_migrate.connect(sqlite_guards_restore, sender=self, dispatch_uid="sqlite_guards")
