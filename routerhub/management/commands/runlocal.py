"""``make run``: the web server, a background worker and the demo upstream in one foreground command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.management.commands.seed_demo import DEMO_EMAIL, DEMO_PASSWORD


def local_processes(port: int) -> dict[str, list[str]]:
    python = sys.executable
    processes = {
        "web": [
            python,
            "-m",
            "uvicorn",
            "routerhub.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        "worker": [
            python,
            "-m",
            "celery",
            "-A",
            "routerhub",
            "worker",
            "-B",
            "-Q",
            "default,training",
            "--concurrency",
            "2",
            "-l",
            "warning",
            "--schedule",
            str(settings.VAR_DIR / "celerybeat-schedule"),
        ],
    }
    # The demo provider's simulated models (routing.demo) are answered by this fake upstream.
    upstream = urlsplit(settings.DEMO_UPSTREAM_URL)
    if upstream.hostname in ("127.0.0.1", "localhost") and upstream.port:
        processes["demo-upstream"] = [
            python,
            "-m",
            "routing.fake_upstream",
            "--port",
            str(upstream.port),
        ]
    return processes


class Command(BaseCommand):
    help = "Serve the dashboard and API with a background worker until interrupted (Ctrl-C)."

    def handle(self, *args: Any, **options: Any) -> None:
        port = int(os.environ.get("PORT", "8000"))
        children: dict[str, subprocess.Popen[bytes]] = {}
        for name, argv in local_processes(port).items():
            children[name] = subprocess.Popen(argv)  # noqa: S603 - our own interpreter and modules
        url = f"http://127.0.0.1:{port}"
        self.stdout.write(
            f"\nRouterHub is running at {url}/  (API docs: {url}/api/docs/)\n"
            f"Demo login: {DEMO_EMAIL} / {DEMO_PASSWORD}\n"
            "Emails (signup confirmation, invitations) are printed here.\nPress Ctrl-C to stop.\n"
        )
        try:
            while True:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"{name} exited with {child.returncode}; stopping.")
                        raise KeyboardInterrupt
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            for child in children.values():
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
