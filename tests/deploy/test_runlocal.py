"""``make run`` (``manage.py runlocal``) with taken ports: a clear refusal or a free port, never a lie.

Each test runs the real command in a subprocess on a throwaway SQLite database and ``var/``
folder, as a newcomer's fresh clone would, with a port held by a socket of the test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.routing.servers import poll

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_AND_KEY = """
from decimal import Decimal
from accounts.models import Organization
from accounts.services import api_key_create
from billing.services import ledger_post
from routing.demo import seed_demo_provider
organization = Organization.objects.create(slug="demo", name="Demo")
seed_demo_provider(organization)  # what make run's seed_demo does for the catalog
ledger_post(organization=organization, kind="promotion", amount=Decimal("1"), idempotency_key="t")
key = api_key_create(organization=organization, name="runlocal test", created_by=None)
print("KEY=" + key.plaintext)
"""


def _local_env(var_dir: Path, port: int) -> dict[str, str]:
    """A fresh checkout's environment: no services, development settings, this port."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DEMO_UPSTREAM_URL"}
    }
    env.update(
        ROUTERHUB_ENV="development",
        ROUTERHUB_VAR_DIR=str(var_dir),
        DATABASE_URL=f"sqlite:///{var_dir}/db.sqlite3",
        PORT=str(port),
    )
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def held_port() -> Iterator[socket.socket]:
    """A listening socket on a free port, as another program holding it would be."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder
    holder.close()


def test_a_taken_web_port_stops_make_run_before_the_banner(
    tmp_path: Path, held_port: socket.socket
) -> None:
    port = held_port.getsockname()[1]

    result = _manage(_local_env(tmp_path, port), "runlocal")

    assert result.returncode != 0
    assert f"Port {port} is already in use" in result.stderr
    assert f"make run PORT={port + 10}" in result.stderr
    assert "running at" not in result.stdout


def test_a_taken_demo_upstream_url_port_is_refused_with_what_to_do(
    tmp_path: Path, held_port: socket.socket
) -> None:
    taken = held_port.getsockname()[1]
    env = _local_env(tmp_path, _free_port())
    env["DEMO_UPSTREAM_URL"] = f"http://127.0.0.1:{taken}"

    result = _manage(env, "runlocal")

    assert result.returncode != 0
    assert f"names port {taken}, which is already in use" in result.stderr
    assert "Unset DEMO_UPSTREAM_URL" in result.stderr
    assert "running at" not in result.stdout


def test_a_taken_upstream_port_is_replaced_by_a_free_one_and_requests_are_served(
    tmp_path: Path,
) -> None:
    # The old fixed upstream port was PORT + 1: hold it.
    holder = socket.socket()
    for _ in range(20):
        port = _free_port()
        try:
            holder.bind(("127.0.0.1", port + 1))
            break
        except OSError:
            continue
    holder.listen()
    env = _local_env(tmp_path, port)
    assert _manage(env, "migrate", "--noinput").returncode == 0
    seeded = _manage(env, "shell", "-c", SEED_AND_KEY)
    assert seeded.returncode == 0, seeded.stderr
    key = re.search(r"KEY=(\S+)", seeded.stdout)
    assert key, seeded.stdout
    lines: list[str] = []
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runlocal"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its children are stopped with it below
    )
    assert server.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(server.stdout or []), daemon=True)
    reader.start()
    try:
        poll(lambda: any("running at" in line for line in lines), timeout=60)
        upstream = re.search(r"Demo upstream \(simulated models\): (\S+)", "".join(lines))
        assert upstream, lines
        assert upstream.group(1) != f"http://127.0.0.1:{port + 1}"

        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key.group(1)}"},
            json={"model": "demo/small", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )

        assert response.status_code == 200, response.text
    finally:
        holder.close()
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
