"""Test-owned services for fault tests: a private Redis and a private PostgreSQL cluster (both
killed and restarted by the test, never the shared ones), the gateway in its production form
(gunicorn + uvicorn workers as a real subprocess, ``bench.gateway``) and a small load driver
that remembers the generation id of every 200.

The shared Postgres and Redis used by the rest of the suite are never touched: every server the
tests stop is one they started, on a free port, in its own process group.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench.gateway import routerhub_env, run_py, start_fake, start_routerhub
from bench.procs import Proc, free_port
from tests.conftest import service_missing
from tests.routing.servers import poll

REPO = Path(__file__).resolve().parents[2]
USAGE_STREAM = "rh:usage-stream"  # billing.outbox.STREAM


def _as_postgres() -> list[str]:
    """PostgreSQL refuses to run as root: drop to the postgres user when we are root."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        service_missing("running as root without runuser: cannot start a private PostgreSQL")
    return [str(runuser), "-u", "postgres", "--"]


def postgres_bin() -> Path:
    """The directory holding initdb/pg_ctl, or skip (fail under REQUIRE_SERVICES=1)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts)
    if not versions:
        service_missing("needs PostgreSQL server binaries (initdb, pg_ctl) for a private cluster")
    return versions[-1].parent


def redis_bin() -> str:
    found = shutil.which("redis-server")
    if found is None:
        service_missing("needs redis-server on PATH for a private Redis")
    return str(found)


class PrivateRedis:
    """A redis-server owned by the test: started, SIGKILLed and restarted on the same port.

    With ``appendonly`` the stream survives a restart (AOF in ``workdir``), as the usage outbox
    requires of a production Redis; without it a restart comes back empty.
    """

    def __init__(self, workdir: Path, *, appendonly: bool) -> None:
        self.binary = redis_bin()
        self.workdir = workdir
        self.appendonly = appendonly
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", str(self.workdir), "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "everysec"]  # fmt: skip
        self.starts += 1
        log = (self.workdir / f"redis-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        from routerhub.redis_clients import redis_client

        client = redis_client(f"redis://127.0.0.1:{self.port}/0")
        poll(lambda: self._pings(client), timeout=20, interval=0.05)
        client.close()
        return self

    def _pings(self, client: Any) -> bool:
        import redis

        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {self.proc.returncode}")
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
            return False

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown (nothing is saved on the way out)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, in a temporary directory owned by postgres.

    ``crash()`` is ``pg_ctl stop -m immediate``: every backend dies at once, uncommitted
    transactions are lost, committed ones survive (recovery replays the WAL on ``start()``).

    The cluster is a copy of the session's ``migrated_cluster()``: its ``template1`` already
    holds the schema, so a database created in it starts migrated and the tests' own
    ``manage.py migrate`` finds nothing to apply (20-30 s of a loaded CI machine per test);
    ``template=False``: a fresh ``initdb``.
    """

    def __init__(self, *, template: bool = True) -> None:
        self.bin = postgres_bin()
        self.runas = _as_postgres()
        self.root = Path(tempfile.mkdtemp(prefix="rh-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if self.runas:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.root, postgres.pw_uid, postgres.pw_gid)
        if template:
            copy = [*self.runas, "cp", "-a", str(migrated_cluster()), str(self.data)]
            subprocess.run(copy, check=True, capture_output=True, timeout=120)
        else:
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      "--no-sync", "-E", "UTF8")  # fmt: skip

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [*self.runas, str(self.bin / tool), *args],
            capture_output=True, text=True, check=False, timeout=120, cwd=self.root,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{result.stdout}{result.stderr}")

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> PrivatePostgres:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=100")  # fmt: skip
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.root / "postgres.log"), "-w", "-t", "60", "start")  # fmt: skip
        return self

    def crash(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


_migrated: list[PrivatePostgres] = []  # the session's template cluster, stopped


def migrated_cluster() -> Path:
    """The data directory of a stopped cluster whose ``template1`` holds the migrated schema:
    made once per test session (``initdb``, ``manage.py migrate`` into ``template1``, a clean
    shutdown) and removed when the session's process exits."""
    if not _migrated:
        cluster = PrivatePostgres(template=False).start()
        try:
            env = routerhub_env("http://127.0.0.1:9") | {
                "DATABASE_URL": cluster.url("template1"),
                "REDIS_URL": "",
                "CELERY_BROKER_URL": "memory://",
                "ROUTERHUB_VAR_DIR": str(cluster.root / "var"),
            }
            run_py(["manage.py", "migrate", "--noinput", "-v", "0"], env, cluster.root / "m.log")
            cluster._run("pg_ctl", "-D", str(cluster.data), "-m", "fast", "-w", "stop")
        except BaseException:
            cluster.stop()
            raise
        atexit.register(shutil.rmtree, cluster.root, ignore_errors=True)
        _migrated.append(cluster)
    return _migrated[0].data


@contextlib.contextmanager
def private_services(
    redis_dir: Path, *, appendonly: bool
) -> Iterator[tuple[PrivatePostgres, PrivateRedis]]:
    """A throwaway PostgreSQL (with an empty ``routerhub`` database) and Redis, owned by the
    test that may crash and restart them; stopped afterwards whatever happened."""
    postgres = PrivatePostgres().start()
    redis = PrivateRedis(redis_dir, appendonly=appendonly)
    try:
        redis.start()
        postgres.create_database("routerhub")
        yield postgres, redis
    finally:
        redis.stop()
        postgres.stop()


@dataclass
class Gateway:
    """RouterHub served by gunicorn with uvicorn workers (``deploy/gunicorn.conf.py``), production
    settings, against the given database and Redis, with the demo providers on a fake upstream."""

    url: str
    key: str
    env: dict[str, str]
    database_url: str
    procs: list[Proc] = field(default_factory=list)

    @property
    def server(self) -> Proc:
        return self.procs[-1]

    def chat(self, client: httpx.Client, content: str = "ping") -> httpx.Response:
        return client.post(
            f"{self.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {self.key}"},
            json={
                "model": "demo/small",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": content}],
            },
        )

    def log(self) -> str:
        return self.server.log_tail(80)


@contextlib.contextmanager
def gateway_running(
    out: Path, *, database_url: str, redis_url: str, workers: int = 2, **extra_env: str
) -> Iterator[Gateway]:
    """Fake upstream + migrated, seeded database + gunicorn; everything stopped on exit."""
    out.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    try:
        fake, upstream = start_fake(0, out)
        procs.append(fake)
        env = routerhub_env(upstream) | {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ROUTERHUB_VAR_DIR": str(out / "var"),
            "CELERY_BROKER_URL": "memory://",
            **extra_env,
        }
        run_py(["manage.py", "migrate", "--noinput", "-v", "0"], env, out / "setup.log")
        import json

        seeded = json.loads(run_py(["-m", "bench.seed", "--seed"], env, out / "setup.log")
                            .splitlines()[-1])  # fmt: skip
        server, url = start_routerhub(env, workers, out)
        procs.append(server)
        yield Gateway(url=url, key=str(seeded["key"]), env=env, database_url=database_url,
                      procs=procs)  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.stop()


class Load:
    """``concurrency`` threads sending chat completions in closed loops until ``stop()``.

    Remembers every outcome in order: ``(status or transport error name, generation id of a 200,
    error type of a non-200)``; a 200's id is the request's ``gen-…`` id.
    """

    def __init__(self, gateway: Gateway, concurrency: int = 4) -> None:
        self.gateway = gateway
        self.outcomes: list[tuple[int | str, str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True)
                         for _ in range(concurrency)]  # fmt: skip

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)  # longer than a request's own 30 s timeout

    def _loop(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = self.gateway.chat(client)
                except httpx.HTTPError as exc:
                    outcome: tuple[int | str, str, str] = (type(exc).__name__, "", "")
                else:
                    try:
                        body = response.json()
                        error = "" if response.status_code == 200 else str(body["error"]["type"])
                        outcome = (response.status_code, str(body.get("id", "")), error)
                    except (ValueError, KeyError, TypeError, AttributeError):
                        # Not our error format (a proxy's or a crashed worker's page): counted.
                        outcome = (response.status_code, "", "not_api_format")
                with self._lock:
                    self.outcomes.append(outcome)

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def since(self, start: int) -> list[tuple[int | str, str, str]]:
        with self._lock:
            return self.outcomes[start:]

    def ok_ids(self) -> list[str]:
        with self._lock:
            return [gen for status, gen, _ in self.outcomes if status == 200]

    def statuses(self, start: int = 0) -> Counter[int | str]:
        return Counter(status for status, _, _ in self.since(start))


@dataclass
class Books:
    """What the database says after the load: usage records, holds, ledger vs balance."""

    records: dict[str, str]  # generation id -> status
    held: int
    records_without_charge: int
    charges_without_record: int
    ledger_sum: Decimal
    balance: Decimal
    reserved: Decimal


def books(database_url: str) -> Books:
    import psycopg

    with psycopg.connect(database_url) as conn:
        records: dict[str, str] = dict(
            conn.execute("SELECT generation_id, status FROM billing_usagerecord").fetchall()
        )
        (held,) = conn.execute(
            "SELECT count(*) FROM billing_reservation WHERE state = 'held'"
        ).fetchone() or (0,)
        (without_charge,) = conn.execute(
            "SELECT count(*) FROM billing_usagerecord u WHERE u.cost > 0 AND NOT EXISTS "
            "(SELECT 1 FROM billing_ledgerentry l "
            " WHERE l.idempotency_key = 'usage:' || u.generation_id)"
        ).fetchone() or (0,)
        (without_record,) = conn.execute(
            "SELECT count(*) FROM billing_ledgerentry l WHERE l.kind = 'usage' AND NOT EXISTS "
            "(SELECT 1 FROM billing_usagerecord u "
            " WHERE l.idempotency_key = 'usage:' || u.generation_id)"
        ).fetchone() or (0,)
        (ledger_sum,) = conn.execute(
            "SELECT coalesce(sum(amount), 0) FROM billing_ledgerentry"
        ).fetchone() or (Decimal(0),)
        balance, reserved = conn.execute(  # reserved: held - released (billing.models.CreditHold)
            "SELECT coalesce(sum(balance), 0), coalesce(sum(h.held - a.released), 0) "
            "FROM billing_creditaccount a JOIN billing_credithold h USING (organization_id)"
        ).fetchone() or (Decimal(0), Decimal(0))
    return Books(records, held, without_charge, without_record, ledger_sum, balance, reserved)


def settled(redis_url: str, database_url: str, expected: set[str], timeout: float) -> Books:
    """The books once the usage stream is empty, no hold is left and every ``expected`` id has
    its record, or as they stand after ``timeout`` s (the caller's assertions say what is off)."""
    from routerhub.redis_clients import redis_client

    client = redis_client(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            state = books(database_url)
            drained = client.xlen(USAGE_STREAM) == 0
            if (drained and state.held == 0 and expected <= set(state.records)) or (
                time.monotonic() > deadline
            ):
                return state
            time.sleep(0.25)
    finally:
        client.close()
