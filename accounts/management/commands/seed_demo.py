"""Seed the demo organization and its login for ``make run`` (idempotent)."""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils.module_loading import import_string

from accounts.models import Membership, Organization, Role, User

DEMO_EMAIL = "demo@routerhub.local"
DEMO_PASSWORD = "routerhub-demo"
DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Create the demo organization, its owner login and demo data (safe to run again)."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(email=DEMO_EMAIL).first()
        if user is None:
            user = User.objects.create_user(DEMO_EMAIL, DEMO_PASSWORD)
        EmailAddress.objects.update_or_create(
            user=user, email=DEMO_EMAIL, defaults={"verified": True, "primary": True}
        )
        organization, _ = Organization.objects.get_or_create(
            slug=DEMO_SLUG, defaults={"name": "Demo organization"}
        )
        Membership.objects.get_or_create(
            user=user, organization=organization, defaults={"role": Role.OWNER}
        )
        for dotted in settings.DEMO_SEEDERS:
            import_string(dotted)(organization)
        self.stdout.write(f"Demo login: {DEMO_EMAIL} / {DEMO_PASSWORD}")
