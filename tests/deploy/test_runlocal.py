"""``make run`` (``manage.py runlocal``) with taken ports: a clear refusal or a free port, never a lie;
and stopped (Ctrl-C, SIGTERM, SIGKILL), it leaves no process behind, its worker's pool and beat
included, also when it inherited SIGINT and SIGTERM ignored and blocked (a background job of a
script, as CI's own run was: its Ctrl-C test then hung).

Each test runs the real command in a subprocess on a throwaway SQLite database and ``var/``
folder, as a newcomer's fresh clone would, with a port held by a socket of the test. Each
command runs in a session of its own, every process of which is killed when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
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


def session_processes(session: int) -> list[str]:
    """``pid pgid command`` of each live (not zombie) process of ``session``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # it ended while being read
        state, _, pgid, sid = text[text.rindex(")") + 2 :].split()[:4]
        if int(sid) == session and state != "Z":
            found.append(f"{stat.parent.name} {pgid} {command.strip()}")
    return found


# Starts runlocal as a job started with ``&`` by a script, or a runner, would: SIGINT and SIGTERM
# ignored, and blocked, from before its interpreter starts (both survive ``exec``).
INHERITED_IGNORED = (
    "import os, signal, sys; stops = {signal.SIGINT, signal.SIGTERM}; "
    "[signal.signal(s, signal.SIG_IGN) for s in stops]; "
    "signal.pthread_sigmask(signal.SIG_BLOCK, stops); "
    "os.execv(sys.executable, [sys.executable, 'manage.py', 'runlocal'])"
)


@contextlib.contextmanager
def runlocal(
    env: dict[str, str], *, inherited_ignored: bool = False
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``manage.py runlocal`` in a session of its own and its output lines so far; when the block
    ends, SIGKILL to every process of its session, whatever the test did."""
    lines: list[str] = []
    argv = ["-c", INHERITED_IGNORED] if inherited_ignored else ["manage.py", "runlocal"]
    server = subprocess.Popen(
        [sys.executable, *argv],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    reader = threading.Thread(target=lambda: lines.extend(server.stdout or []), daemon=True)
    reader.start()
    try:
        yield server, lines
    finally:
        for pgid in {int(line.split()[1]) for line in session_processes(server.pid)}:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        server.wait(timeout=10)


def _until(predicate: Callable[[], object], timeout: float, failure: Callable[[], str]) -> None:
    """Wait (a generous bound, not a timing claim) for ``predicate``; else fail with ``failure()``."""
    try:
        poll(predicate, timeout=timeout, interval=0.2)
    except AssertionError:
        pytest.fail(failure())


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database, migrated once for the module (it takes a while)."""
    var_dir = tmp_path_factory.mktemp("migrated")
    done = _manage(_local_env(var_dir, _free_port()), "migrate", "--noinput")
    assert done.returncode == 0, done.stderr
    return var_dir / "db.sqlite3"


def _migrated_env(var_dir: Path, port: int, migrated: Path) -> dict[str, str]:
    """``_local_env`` on a copy of the migrated database."""
    shutil.copyfile(migrated, var_dir / "db.sqlite3")
    return _local_env(var_dir, port)


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
    tmp_path: Path, migrated: Path
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
    env = _migrated_env(tmp_path, port, migrated)
    seeded = _manage(env, "shell", "-c", SEED_AND_KEY)
    assert seeded.returncode == 0, seeded.stderr
    key = re.search(r"KEY=(\S+)", seeded.stdout)
    assert key, seeded.stdout
    try:
        with runlocal(env) as (_, lines):
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


@pytest.mark.parametrize(
    ("how", "inherited_ignored"),
    [
        ("ctrl-c", False),
        ("sigterm", False),
        ("sigkill", False),
        ("ctrl-c", True),
        ("sigterm", True),
    ],
    ids=["ctrl-c", "sigterm", "sigkill", "ctrl-c-inherited-ignored", "sigterm-inherited-ignored"],
)
def test_a_stopped_make_run_leaves_no_process_behind(
    tmp_path: Path, migrated: Path, how: str, inherited_ignored: bool
) -> None:
    """Ctrl-C (SIGINT to the terminal's process group), SIGTERM or SIGKILL to the command alone,
    once its worker's pool and beat are up: the command ends and no process of its session is
    left. On main's code SIGTERM and SIGKILL left the web server, the worker (pool, beat) and the
    demo upstream running; on the first fix's, a command that inherited SIGINT ignored (CI run
    as a background job) never stopped on Ctrl-C."""
    env = _migrated_env(tmp_path, _free_port(), migrated)
    with runlocal(env, inherited_ignored=inherited_ignored) as (server, lines):
        _until(
            lambda: any("running at" in line for line in lines), 90, lambda: f"no banner: {lines}"
        )
        # The worker's pool and beat are up: what was left behind.
        _until(
            lambda: sum(" worker " in p for p in session_processes(server.pid)) >= 3,
            60,
            lambda: f"worker pool and beat not up: {session_processes(server.pid)}",
        )

        if how == "ctrl-c":
            os.killpg(server.pid, signal.SIGINT)
        else:
            os.kill(server.pid, signal.SIGTERM if how == "sigterm" else signal.SIGKILL)

        _until(
            lambda: server.poll() is not None,
            25,
            lambda: f"runlocal still running 25 s after {how}: {session_processes(server.pid)}",
        )
        _until(
            lambda: session_processes(server.pid) == [],
            20,
            lambda: f"left running 20 s after {how}: {session_processes(server.pid)}",
        )
        if how != "sigkill":
            assert server.returncode == 0, lines
            assert any("no process of it is left running" in line for line in lines), lines
