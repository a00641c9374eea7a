"""``manage.py usage_settler``: the dedicated settler of the usage stream, until SIGTERM/SIGINT.

``make serve`` (deploy/gunicorn.conf.py) runs one beside the gateway workers; a deployment may
run it as its own container instead (deploy/docker-compose.yml, deploy/k8s). The current batch
is always finished before it exits.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing.outbox import usage_settler_run


class Command(BaseCommand):
    help = "Settle gateway usage from the Redis stream in batches until stopped."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.REDIS_URL:
            raise CommandError("REDIS_URL is not set: without Redis each request settles itself.")
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        usage_settler_run(stop)
