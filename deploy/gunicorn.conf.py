"""Gunicorn configuration for the production server (``make serve``, the Docker image, Kubernetes).

Gunicorn manages processes; each worker runs the ASGI app (``routerhub.asgi:application``) on
uvicorn. Everything tunable comes from the environment so one file serves every deployment:

    PORT                      listen port (default 8000), bound on 0.0.0.0
    WEB_CONCURRENCY           worker processes (default: CPU count)
    GUNICORN_TIMEOUT          seconds a silent worker may live before it is killed (default 60)
    GUNICORN_GRACEFUL_TIMEOUT seconds in-flight requests get after SIGTERM (default 30)
    GUNICORN_KEEPALIVE        seconds to hold an idle keep-alive connection (default 5)
    GUNICORN_MAX_REQUESTS     recycle a worker after this many requests; 0 = never (default 0)
    GUNICORN_WORKER_CONNECTIONS  connections and requests one worker serves at once; past it,
                              uvicorn answers 503 at once instead of queueing; 0 = no limit
                              (default 1000)
    GUNICORN_ACCESS_LOG       "1" to write an access log to stdout (off by default)
    FORWARDED_ALLOW_IPS       peers whose X-Forwarded-* headers are believed (default 127.0.0.1:
                              a proxy on the same host); deploy/k8s sets * behind its ingress
    LOG_LEVEL                 gunicorn's error-log level (default info)
    USAGE_SETTLER             "process" (default here): the master also runs one
                              `manage.py usage_settler` (restarted if it dies), and the workers
                              only append usage to the Redis stream; "worker": every worker
                              settles (see billing/outbox.py). Without REDIS_URL, neither.

Command-line flags (``--workers``, ``--bind``) override these, as ``make serve`` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path as _Path
from typing import Any as _Any


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, not {raw!r}") from None
    if value < 0:
        raise SystemExit(f"{name} must not be negative")
    return value


# uvicorn 0.54 still ships ``uvicorn.workers`` (deprecated in favour of the separate
# ``uvicorn-worker`` package). Prefer that package when it is installed; the test in
# tests/deploy checks that whichever path is chosen imports.
try:
    import uvicorn_worker  # noqa: F401

    worker_class = "uvicorn_worker.UvicornWorker"
except ImportError:
    worker_class = "uvicorn.workers.UvicornWorker"

wsgi_app = "routerhub.asgi:application"
bind = f"0.0.0.0:{_int('PORT', 8000)}"
workers = _int("WEB_CONCURRENCY", 0) or (os.cpu_count() or 1)

# A worker that does not heartbeat for `timeout` seconds is killed and replaced. With async
# workers the heartbeat runs on the event loop, so this only fires when the loop is blocked.
# Streaming responses are not limited by it.
timeout = _int("GUNICORN_TIMEOUT", 60)
# After SIGTERM (a rolling deploy, `docker stop`): stop accepting, let requests in flight
# finish for this long, then exit. Keep it below the orchestrator's grace period
# (terminationGracePeriodSeconds in deploy/k8s, stop_grace_period in docker-compose).
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Idle keep-alive connections. Behind a load balancer or ingress, set this LONGER than its
# upstream idle timeout (deploy/k8s sets 75s against ingress-nginx's 60s) so the balancer, not
# us, closes idle connections and never sends a request on a socket we just closed.
keepalive = _int("GUNICORN_KEEPALIVE", 5)
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = max_requests // 10
# Request bodies are capped in the application, per path, before anything reads them
# (REQUEST_MAX_BODY_BYTES for Django's paths, routerhub/body_limits.py; GATEWAY_MAX_BODY_BYTES
# for /v1): uvicorn has no body limit of its own. What it can bound is how much one worker takes
# on at once: each Django request runs in a thread of its own and waits for one of the worker's
# DATABASE_POOL_MAX_SIZE connections. The uvicorn worker does not read gunicorn's
# `worker_connections`; post_fork hands it on as uvicorn's `limit_concurrency`.
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", 1000)

# Heartbeat files on tmpfs: a disk-backed /tmp can stall and get healthy workers killed, and a
# read-only root filesystem has no writable /tmp at all.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: PTH112, S108

# Logs go to stdout/stderr for the container runtime. Access logs are off by default (the app
# logs what matters, with the request id); turn them on with GUNICORN_ACCESS_LOG=1.
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "") in {"1", "true", "yes"} else None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
capture_output = True


def post_fork(server: _Any, worker: _Any) -> None:
    """Before the worker builds its server: uvicorn's concurrency limit is gunicorn's
    ``worker_connections`` (0: none)."""
    worker.config.limit_concurrency = worker_connections or None


def post_worker_init(worker: _Any) -> None:
    """The access log (which uvicorn's workers write through gunicorn's handlers) passes through
    the same redaction as the app's log: paths can hold confirmation, reset and invitation
    tokens (routerhub/logs.py)."""
    from routerhub.logs import RedactSecrets

    for logger in (worker.log.access_log, worker.log.error_log):
        for handler in logger.handlers:
            handler.addFilter(RedactSecrets())


# Whose X-Forwarded-For names the client (REMOTE_ADDR, which the per-IP login limits count).
# Trusting every peer (*), uvicorn takes the header's leftmost entry, which the client writes:
# a server reached directly (make serve, docker-compose's published port) would let each
# attempt claim a new address. By default only a proxy on the same host is believed; behind a
# load balancer or ingress, list its addresses, or * where nothing else can reach the server
# and the proxy replaces the header (deploy/k8s/configmap.yaml).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Load the app in each worker, not in the master: workers can then be replaced without the
# master holding stale database connections or a forked Redis client.
preload_app = False


# --- the usage settler ---------------------------------------------------------------------------
# Workers hand each request's usage to a Redis stream; one settler process beside them settles it
# in batches (a settler inside every worker took the GIL from requests: billing/outbox.py).
os.environ.setdefault("USAGE_SETTLER", "process")
_settler: dict[str, _Any] = {"proc": None, "stopping": False}


def _settler_wanted() -> bool:
    return os.environ.get("USAGE_SETTLER") == "process" and bool(os.environ.get("REDIS_URL"))


def _settler_start() -> subprocess.Popen[bytes]:
    manage = _Path(__file__).resolve().parent.parent / "manage.py"
    return subprocess.Popen([sys.executable, str(manage), "usage_settler"])  # noqa: S603


def _settler_watch(server: _Any) -> None:
    """Restart the settler if it dies, backing off while it keeps dying quickly."""
    delay, started = 1.0, time.monotonic()
    while not _settler["stopping"]:
        time.sleep(0.5)
        if _settler["proc"].poll() is None or _settler["stopping"]:
            continue
        delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 30.0)
        server.log.error("usage settler exited; restarting it in %.0f s", delay)
        time.sleep(delay)
        if not _settler["stopping"]:
            _settler["proc"], started = _settler_start(), time.monotonic()


def when_ready(server: _Any) -> None:
    if not _settler_wanted():
        return
    _settler["proc"] = _settler_start()
    threading.Thread(target=_settler_watch, args=(server,), daemon=True).start()


def on_exit(server: _Any) -> None:
    """After the workers have stopped (their last usage is in the stream): stop the settler,
    which finishes its batch first."""
    _settler["stopping"] = True
    proc = _settler["proc"]
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=graceful_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
