"""``make run``: the web server, a background worker and the demo upstream in one foreground command.

The web server listens on ``PORT`` (8000). The demo upstream listens on ``DEMO_UPSTREAM_URL``'s
port when that is set, else on ``PORT + 1`` or, when that is taken, any free port; the demo
providers are pointed at it before anything starts. Every port is checked, and every child seen
listening, before the banner: a taken port stops the command with what to do instead.

Ctrl-C (SIGINT), SIGTERM and SIGHUP (the terminal closed) stop every child: each runs in a
process group of its own; the child is sent SIGTERM and whatever is left of its group after
``STOP_GRACE`` seconds SIGKILL, so the worker's pool and beat processes go with it even when
its main process outlives the grace or exits first. A second signal while stopping skips the
grace; none interrupts the stop half-way. Should this command die without stopping them
(SIGKILL), on Linux the kernel sends each child SIGTERM (``_lifeline``); the worker then stops
its pool (whose processes also die with it: Celery gives them a parent-death SIGKILL) and beat.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.management.commands.seed_demo import DEMO_EMAIL, DEMO_PASSWORD
from routing.demo import demo_upstream_register

LOCAL_HOSTS = ("127.0.0.1", "localhost")
START_TIMEOUT = 60.0  # seconds for the web server and the upstream to listen
STOP_GRACE = 10.0  # seconds the children have to stop after SIGTERM, before SIGKILL
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl() -> Any:
    """libc's ``prctl`` on Linux (looked up before any fork), else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _lifeline(prctl: Any, parent: int) -> Any:
    """The children's ``preexec_fn``: on Linux the kernel sends the child SIGTERM when this
    command dies, however it dies (SIGKILL, the OOM killer), as the stop signals' handler would.
    A parent already gone before that was set is caught by ``getppid``. Elsewhere nothing: only
    the stop signals' handler stops the children."""

    def arm() -> None:
        if prctl is None:
            return
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)  # runlocal already died: start nothing

    return arm


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM and SIGHUP stop the command as Ctrl-C does


@contextlib.contextmanager
def _signals_to(handler: Any) -> Iterator[None]:
    """``handler`` for the stop signals this process does not ignore (``nohup``: SIGHUP)."""
    caught = [sig for sig in STOP_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN]
    previous = {sig: signal.signal(sig, handler) for sig in caught}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _exited(child: subprocess.Popen[bytes]) -> int | None:
    """The child's exit status once it has ended, without reaping it: until ``_stop`` has
    signalled its group, its pid (the group's id) cannot be handed to another process."""
    if child.returncode is not None or not hasattr(os, "waitid"):
        return child.poll()
    try:
        info = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return child.poll()
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def _signal_group(child: subprocess.Popen[bytes], sig: int) -> None:
    """``sig`` to the child's process group: the child and everything it started."""
    with contextlib.suppress(ProcessLookupError):  # nothing of the group is left
        os.killpg(child.pid, sig)


class Command(BaseCommand):
    help = "Serve the dashboard and API with a background worker until interrupted (Ctrl-C)."

    def handle(self, *args: Any, **options: Any) -> None:
        port = web_port()
        upstream_url = demo_upstream_url(port)
        demo_upstream_register(upstream_url)
        # The children read the same upstream URL from their settings.
        child_env = {**os.environ, "DEMO_UPSTREAM_URL": upstream_url}
        children: dict[str, subprocess.Popen[bytes]] = {}
        with _signals_to(_interrupt):
            self._serve(children, port, upstream_url, child_env)

    def _serve(
        self,
        children: dict[str, subprocess.Popen[bytes]],
        port: int,
        upstream_url: str,
        child_env: dict[str, str],
    ) -> None:
        lifeline = _lifeline(_prctl(), os.getpid())
        try:
            for name, argv in local_processes(port, upstream_url).items():
                # Our own interpreter and modules, each child in a process group of its own
                # (stopped as a whole by _stop; the terminal's Ctrl-C reaches this command only)
                # and sent SIGTERM should this command die without stopping it (``_lifeline``).
                children[name] = subprocess.Popen(  # noqa: S603
                    argv, env=child_env, process_group=0, preexec_fn=lifeline
                )
            self._wait_listening(children, port, upstream_url)
        except BaseException:
            self._stop(children)
            raise
        url = f"http://127.0.0.1:{port}"
        self.stdout.write(
            f"\nRouterHub is running at {url}/  (API docs: {url}/api/docs/)\n"
            f"Demo login: {DEMO_EMAIL} / {DEMO_PASSWORD}\n"
            f"Demo upstream (simulated models): {upstream_url}\n"
            "Emails (signup confirmation, invitations) are printed here.\nPress Ctrl-C to stop.\n"
        )
        try:
            while True:
                for name, child in children.items():
                    if (code := _exited(child)) is not None:
                        self.stderr.write(f"{name} exited with {code}; stopping.")
                        raise KeyboardInterrupt
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(children)

    def _wait_listening(
        self, children: dict[str, subprocess.Popen[bytes]], port: int, upstream_url: str
    ) -> None:
        """Return once the web server (and a local demo upstream) accept connections."""
        ports = {"web": port}
        if "demo-upstream" in children:
            ports["demo-upstream"] = urlsplit(upstream_url).port or 0
        deadline = time.monotonic() + START_TIMEOUT
        while ports:
            for name, child in children.items():
                if (code := _exited(child)) is not None:
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

    @staticmethod
    def _stop(children: dict[str, subprocess.Popen[bytes]]) -> None:
        """SIGTERM to each child, then SIGKILL to whatever is left of its group after
        ``STOP_GRACE`` seconds (at once on a second signal); every child is waited for."""
        hurry = threading.Event()
        with _signals_to(lambda signum, frame: hurry.set()):
            for child in children.values():
                if _exited(child) is None:  # the child alone: the worker stops its pool itself
                    with contextlib.suppress(ProcessLookupError):  # not send_signal: it reaps
                        os.kill(child.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            while not hurry.is_set() and time.monotonic() < deadline:
                if all(_exited(child) is not None for child in children.values()):
                    break
                time.sleep(0.1)
            for child in children.values():
                # Always: a child that exited may leave processes it started (pool, beat). Then
                # reaped: not before, or its group's id could be another process's by now.
                _signal_group(child, signal.SIGKILL)
                child.wait()
