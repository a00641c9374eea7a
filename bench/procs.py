"""Child processes for the benchmark: start in their own process group, measure, always stop.

CPU time and memory come from ``/proc``: a server's cost is the sum over its process tree
(gunicorn master + workers, LiteLLM's supervisor + workers). Benchmarks that compare two versions
run the older one from ``export_revision``'s copy of its commit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Self

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
REPO = Path(__file__).resolve().parent.parent


def git_commit(rev: str, *, short: int = 0) -> str:
    """The commit id ``rev`` names in this repository (abbreviated to ``short`` digits if set)."""
    argv = ["git", "-C", str(REPO), "rev-parse", *([f"--short={short}"] if short else []), rev]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def export_revision(rev: str, tree: Path) -> Path:
    """Commit ``rev``'s files (``git archive``) written into the folder ``tree`` (created if
    missing), with this checkout's ``.venv`` linked in: the tree runs as this one does, its
    servers from ``tree/.venv/bin`` and its children on ``PYTHONPATH=tree``."""
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", git_commit(rev)],
                             capture_output=True, check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    if not (tree / ".venv").exists():
        (tree / ".venv").symlink_to((REPO / ".venv").resolve())
    return tree


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """A server process in its own session (so its whole group can be signalled)."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path,
                 log_dir: Path) -> None:  # fmt: skip
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the group, wait, then SIGKILL whatever is left of it."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        # Workers may outlive their master for a moment: clear the whole group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._log.close()


def wait_http(url: str, *, timeout: float, proc: Proc | None = None, method: str = "GET",
              body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:  # fmt: skip
    """Poll ``url`` until it answers 200 (bounded); raise with the server's log tail if not."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return bytes(response.read())
                last = f"status {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"status {exc.code}: {exc.read()[:300]!r}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.3)
    tail = proc.log_tail() if proc is not None else ""
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s ({last})\n{tail}")


def http(url: str, *, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes]:  # fmt: skip
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


# --- /proc accounting -------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; everything after the last ')' is fixed.
    return raw[raw.rindex(")") + 2 :].split()


def tree(root: int) -> list[int]:
    """``root`` and all its descendants, from the parent links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    """User + system CPU of the live process tree under ``root``."""
    total = 0
    for pid in tree(root):
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / _TICK


def rss_bytes(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[21]) * _PAGE if fields is not None else 0  # rss (field 24), in pages


class Sampler:
    """Call ``sample()`` every ``interval`` s in a daemon thread between ``start()`` and
    ``stop()``; ``results()`` is what the samples gathered. Bounded: ``stop`` joins the thread
    (at most 5 s) and a sampler keeps aggregates, never the samples. ``with`` starts and stops.
    Subclasses define ``sample`` and ``results``; ``_thread_state`` is a context the sampling
    thread holds while it runs (a database connection, say), ``final_sample`` one last sample
    taken at ``stop`` from the caller's thread."""

    final_sample = False

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _thread_state(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def _run(self) -> None:
        with self._thread_state():
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(self.interval)

    def sample(self) -> None:
        raise NotImplementedError

    def results(self) -> dict[str, Any]:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop sampling (idempotent); returns ``results()``."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(5)
            if self.final_sample:
                self.sample()
        return self.results()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class MemorySampler(Sampler):
    """The peaks of the tree's RSS (all of it, and the workers': all but ``root``)."""

    final_sample = True

    def __init__(self, root: int, interval: float = 0.25) -> None:
        super().__init__(interval)
        self.root = root
        self.peak_total = 0
        self.peak_workers = 0

    def sample(self) -> None:
        sizes = {pid: rss_bytes(pid) for pid in tree(self.root)}
        total = sum(sizes.values())
        workers = total - sizes.get(self.root, 0)
        self.peak_total = max(self.peak_total, total)
        self.peak_workers = max(self.peak_workers, workers)

    def results(self) -> dict[str, Any]:
        return {"peak_total": self.peak_total, "peak_workers": self.peak_workers}


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (from /proc/stat; idle and iowait excluded)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK


def _service_pids() -> list[int]:
    """Postgres and Redis server processes: they work for the bench, so they are not 'foreign'."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                comm = Path(f"/proc/{entry.name}/comm").read_text().strip()
            except OSError:
                continue
            if comm.startswith(("postgres", "redis-server")):
                pids.append(int(entry.name))
    return pids


class ForeignLoad:
    """How many cores other work on the machine (not the bench, Postgres or Redis) used."""

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float]:
        reaped = os.times()  # finished children (each load generator run) count as ours too
        ours = cpu_seconds(os.getpid()) + reaped.children_user + reaped.children_system
        for pid in _service_pids():
            fields = _stat(pid)
            if fields is not None:
                ours += (int(fields[11]) + int(fields[12])) / _TICK
        return time.monotonic(), machine_busy_seconds(), ours

    def cores(self) -> float:
        (t0, busy0, ours0), (t1, busy1, ours1) = self._start, self._snapshot()
        return max(0.0, ((busy1 - busy0) - (ours1 - ours0)) / max(t1 - t0, 1e-9))
