"""``manage.py rotate_provider_keys``: re-encrypt BYOK secrets under the newest encryption key.

Rotation: prepend a new key to PROVIDER_KEYS_ENCRYPTION_KEYS, deploy, run this, drop the old key.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from routing.services import provider_keys_reencrypt


class Command(BaseCommand):
    help = "Re-encrypt every stored provider key with the first PROVIDER_KEYS_ENCRYPTION_KEYS key."

    def handle(self, *args: Any, **options: Any) -> None:
        count = provider_keys_reencrypt()
        self.stdout.write(f"Re-encrypted {count} provider keys.")
