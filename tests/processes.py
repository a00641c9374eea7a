"""Helpers for tests that start server or worker processes against the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection


def database_url() -> str:
    """The pytest-django test database as a ``DATABASE_URL`` another process can use."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    return f"postgres://{db['USER']}{password}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"


def production_environment(var_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment as a production boot of the settings needs it: the required
    secrets as placeholders, no Stripe or billing setting inherited, ``extra`` on top."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "BILLING_"))}
    return inherited | {
        "DJANGO_SETTINGS_MODULE": "routerhub.settings",
        "ROUTERHUB_ENV": "production",
        "ROUTERHUB_VAR_DIR": str(var_dir),
        "SECRET_KEY": "s" * 50,
        "API_KEY_PEPPER": "p" * 50,
        "ALLOWED_HOSTS": "routerhub.example",
        "PROVIDER_KEYS_ENCRYPTION_KEYS": "x" * 43 + "=",
        **extra,
    }


def until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail saying ``what`` was awaited after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def worker_environment(media: Path, **extra: str) -> dict[str, str]:
    """The environment of a Celery worker on the test database, media and broker (not eager),
    ``extra`` on top."""
    return os.environ | {
        "ROUTERHUB_ENV": "test",
        "ROUTERHUB_VAR_DIR": str(settings.VAR_DIR),
        "MEDIA_ROOT": str(media),
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        **extra,
    }


@contextmanager
def training_workers(
    media: Path,
    log_folder: Path,
    *,
    prefork: bool = False,
    queue: str = "training",
    **extra: str,
) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """A starter of real Celery workers on the ``training`` queue (or ``queue``) against the
    test database (``extra``: environment on top; ``prefork``: one pool process, as ``make
    worker`` runs, instead of the solo pool); every worker started is killed when the block
    ends."""
    from tests.log_hygiene import subprocess_log

    env = worker_environment(media, **extra)
    command = [str(Path(sys.executable).parent / "celery"), "-A", "routerhub", "worker"]
    command += [
        "-Q",
        queue,
        *(["--concurrency", "1"] if prefork else ["-P", "solo"]),
        "--without-mingle",
        "--without-gossip",
        "-l",
        "info",
    ]
    workers: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        log = subprocess_log("celery-worker", log_folder).open("wb")
        worker = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=30)
