"""``make run``: the web server, a background worker and the demo upstream in one foreground command.

The web server listens on ``PORT`` (8000). The demo upstream listens on ``DEMO_UPSTREAM_URL``'s
port when that is set, else on ``PORT + 1`` or, when that is taken, any free port; the demo
providers are pointed at it before anything starts. Every port is checked, and every child seen
listening, before the banner: a taken port stops the command with what to do instead.

Ctrl-C, SIGTERM and a closed terminal (SIGHUP) stop every child and the command, and should the
command be killed outright its watchdog stops them: see ``routerhub.local_children``.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.management.commands.seed_demo import DEMO_EMAIL, DEMO_PASSWORD
from routerhub.local_children import LocalChildren, StopRequested, stop_signals
from routing.demo import demo_upstream_register

LOCAL_HOSTS = ("127.0.0.1", "localhost")
START_TIMEOUT = 60.0  # seconds for the web server and the upstream to listen


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_any_free() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def web_port() -> int:
    raw = os.environ.get("PORT", "8000")
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise CommandError(f"PORT must be a port number (1-65535), not {raw!r}.")
    port = int(raw)
    if not port_free(port):
        raise CommandError(
            f"Port {port} is already in use (another RouterHub or another server?). "
            f"Stop it, or choose another port: make run PORT={port + 10}"
        )
    return port


def demo_upstream_url(port: int) -> str:
    """Where the demo upstream will listen: DEMO_UPSTREAM_URL when set, else a free local port."""
    if os.environ.get("DEMO_UPSTREAM_URL"):
        url = str(settings.DEMO_UPSTREAM_URL)
        upstream = urlsplit(url)
        if upstream.hostname in LOCAL_HOSTS and upstream.port and not port_free(upstream.port):
            raise CommandError(
                f"DEMO_UPSTREAM_URL={url} names port {upstream.port}, which is already in use. "
                "Unset DEMO_UPSTREAM_URL to let make run pick a free port, or name a free one."
            )
        return url
    upstream_port = port + 1 if port < 65535 and port_free(port + 1) else port_any_free()
    return f"http://127.0.0.1:{upstream_port}"


def local_processes(port: int, upstream_url: str | None = None) -> dict[str, list[str]]:
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
            # One local worker: no other workers to sync with at start (mingle) or to watch
            # (gossip, heartbeats); each would only slow its start and its stop.
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        ],
    }
    # The demo provider's simulated models (routing.demo) are answered by this fake upstream.
    upstream = urlsplit(upstream_url or settings.DEMO_UPSTREAM_URL)
    if upstream.hostname in LOCAL_HOSTS and upstream.port:
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
        port = web_port()
        upstream_url = demo_upstream_url(port)
        demo_upstream_register(upstream_url)
        # The children read the same upstream URL from their settings.
        child_env = {**os.environ, "DEMO_UPSTREAM_URL": upstream_url}
        with stop_signals():
            children = LocalChildren()
            try:
                for name, argv in local_processes(port, upstream_url).items():
                    children.start(name, argv, child_env)
                self._wait_listening(children, port, upstream_url)
                self._serve(children, port, upstream_url)
            except KeyboardInterrupt as stop:
                how = stop.signame if isinstance(stop, StopRequested) else "SIGINT"
                self.stderr.write(f"\n{how} received: stopping {', '.join(children.processes)}.")
            finally:
                children.stop()
        self.stderr.write("RouterHub stopped; no process of it is left running.")

    def _serve(self, children: LocalChildren, port: int, upstream_url: str) -> None:
        url = f"http://127.0.0.1:{port}"
        self.stdout.write(
            f"\nRouterHub is running at {url}/  (API docs: {url}/api/docs/)\n"
            f"Demo login: {DEMO_EMAIL} / {DEMO_PASSWORD}\n"
            f"Demo upstream (simulated models): {upstream_url}\n"
            "Emails (signup confirmation, invitations) are printed here.\nPress Ctrl-C to stop.\n"
        )
        while (exited := children.exited()) is None:
            time.sleep(0.5)
        self.stderr.write(f"{exited[0]} exited with {exited[1]}; stopping.")

    def _wait_listening(self, children: LocalChildren, port: int, upstream_url: str) -> None:
        """Return once the web server (and a local demo upstream) accept connections."""
        ports = {"web": port}
        if "demo-upstream" in children.processes:
            ports["demo-upstream"] = urlsplit(upstream_url).port or 0
        deadline = time.monotonic() + START_TIMEOUT
        while ports:
            if exited := children.exited():
                name, code = exited
                raise CommandError(
                    f"{name} exited with {code} while starting "
                    f"(its port: {ports.get(name, 'none')}); see its output above."
                )
            ports = {name: p for name, p in ports.items() if not listening(p)}
            if ports and time.monotonic() > deadline:
                raise CommandError(
                    f"{', '.join(ports)} did not start within {START_TIMEOUT:.0f} s."
                )
            if ports:
                time.sleep(0.2)
