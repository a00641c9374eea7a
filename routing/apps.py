from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing and providers"

    def ready(self) -> None:
        # Cache invalidation only (no business logic): any write to a catalog row, from admin,
        # a sync or a test, moves the revision that gateway processes poll once a second.
        from django.db.models.signals import post_delete, post_save

        from routing.models import CatalogModel, Endpoint, Provider

        for model in (Provider, CatalogModel, Endpoint):
            post_save.connect(_catalog_changed, sender=model, dispatch_uid=f"catalog-{model}")
            post_delete.connect(_catalog_changed, sender=model, dispatch_uid=f"catalog-d-{model}")


def _catalog_changed(**kwargs: object) -> None:
    from routing.services import catalog_revision_bump

    catalog_revision_bump()
