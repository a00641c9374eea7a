"""``make run``'s children: each in a process group of its own, stopped whole, none outliving it.

A stop (Ctrl-C, SIGTERM, a closed terminal, a child exiting) sends each child SIGTERM, the
worker SIGQUIT (Celery's cold shutdown) ``HURRY_AFTER`` seconds later, and every process left in
each child's group SIGKILL after ``STOP_GRACE`` seconds, or at once on a second signal.

Should ``make run`` die without stopping them (SIGKILL, the OOM killer), a watchdog forked at the
start (in a group of its own, so Ctrl-C does not reach it) sees the pipe from ``make run`` close
with no "done" on it and stops each child's group the same way; on Linux each child is also sent
SIGTERM by the kernel (``PR_SET_PDEATHSIG``) the moment ``make run`` dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

STOP_GRACE = 5.0  # seconds from SIGTERM to SIGKILL of whatever is left of each child's group
HURRY_AFTER = 1.0  # seconds from SIGTERM to a child's hurry signal (the worker's SIGQUIT)
HURRY_SIGNALS = {"worker": signal.SIGQUIT}  # Celery: cold shutdown, no wait for running tasks
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_LIMIT = 4096  # bytes the watchdog reads: a few pids and "done"
Handler = Callable[[int, Any], None]


class StopRequested(KeyboardInterrupt):
    """A stop signal arrived: stop as Ctrl-C does."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signame = signal.Signals(signum).name


def _interrupt(signum: int, frame: Any) -> None:
    raise StopRequested(signum)


@contextlib.contextmanager
def stop_signals(handler: Handler = _interrupt) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM however they were inherited, and SIGHUP unless ignored.

    A process started in the background of a script (``cmd &`` in a non-interactive shell: SIGINT
    ignored) or by a runner that ignores or blocks them inherits that across ``exec``; Python
    then leaves SIGINT ignored and the old code, which skipped ignored signals, never stopped.
    SIGHUP alone is left ignored when it is (``nohup make run``)."""
    sigs = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        sigs.append(signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in sigs}
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, old in previous.items():
            signal.signal(sig, old)


def _prctl() -> Any:
    """libc's ``prctl`` on Linux (looked up before any fork), else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _lifeline(prctl: Any, parent: int) -> Callable[[], None]:
    """The children's ``preexec_fn``: SIGTERM from the kernel when ``parent`` dies (Linux)."""

    def arm() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)  # make run died before that was set: start nothing

    return arm


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a pid reused by another user's process: alive, not ours to wait for
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing of it is left
        os.killpg(pgid, sig)


def groups_stop(pgids: list[int], grace: float = STOP_GRACE) -> None:
    """The watchdog's stop, with no children of its own to wait for: SIGTERM to each group,
    SIGKILL to what is left of them after ``grace`` seconds. A group's id is its leader's pid,
    which the kernel does not hand out again while any process of the group lives."""
    for pgid in pgids:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(map(_group_alive, pgids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pgid in pgids:
        _signal_group(pgid, signal.SIGKILL)


def _watch(read_fd: int) -> None:
    """Read pids until ``make run`` closes the pipe; stop their groups unless it said "done"."""
    received = b""
    while chunk := os.read(read_fd, 512):
        received = (received + chunk)[:WATCH_LIMIT]
    words = received.split()
    if b"done" not in words:
        groups_stop([int(word) for word in words if word.isdigit()])


def _watchdog_start() -> tuple[int, int]:
    """Fork the watchdog; its pid and the pipe's write end, which only ``make run`` holds (pipes
    are not inherited by the children it starts), so the watchdog sees EOF when it dies."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the watchdog: no threads were running at the fork, nothing returns from here
        try:
            os.close(write_fd)
            os.setpgid(0, 0)  # Ctrl-C to make run's group is not for it
            for sig in (signal.SIGINT, signal.SIGHUP):  # nor a closed terminal: it stops the rest
                signal.signal(sig, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _watch(read_fd)
        finally:
            os._exit(0)
    os.close(read_fd)
    return pid, write_fd


class LocalChildren:
    """The processes ``make run`` started, by name, and their watchdog."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._arm = _lifeline(_prctl(), os.getpid())
        self._watchdog, self._watch_fd = _watchdog_start()

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        # Our own interpreter and modules, in a process group of its own: the terminal's Ctrl-C
        # reaches make run alone, which stops each group as a whole (a worker's pool and beat).
        child = subprocess.Popen(  # noqa: S603
            argv, env=env, process_group=0, preexec_fn=self._arm
        )
        self.processes[name] = child
        os.write(self._watch_fd, f"{child.pid}\n".encode())

    def exited(self) -> tuple[str, int] | None:
        """The first child found to have exited, and its exit status."""
        for name, child in self.processes.items():
            if child.poll() is not None:
                return name, child.returncode
        return None

    def stop(self) -> None:
        """SIGTERM to each child, its hurry signal after ``HURRY_AFTER`` s, SIGKILL to what is
        left of each group after ``STOP_GRACE`` s or on a second signal; all waited for."""
        hurry = threading.Event()
        with stop_signals(lambda signum, frame: hurry.set()):
            self._stop(hurry)
        os.write(self._watch_fd, b"done\n")
        os.close(self._watch_fd)
        os.waitpid(self._watchdog, 0)

    def _stop(self, hurry: threading.Event) -> None:
        for child in self.processes.values():
            if child.poll() is None:  # the child alone: the worker stops its pool and beat itself
                _signal_group_leader(child, signal.SIGTERM)
        start = time.monotonic()
        hurried = False
        while not hurry.is_set() and time.monotonic() - start < STOP_GRACE:
            if all(child.poll() is not None for child in self.processes.values()):
                break
            if not hurried and time.monotonic() - start >= HURRY_AFTER:
                hurried = True
                for name, sig in HURRY_SIGNALS.items():
                    if name in self.processes and self.processes[name].poll() is None:
                        _signal_group_leader(self.processes[name], sig)
            time.sleep(0.1)
        for child in self.processes.values():
            # Always: an exited child may leave processes it started (a pool, beat). A reaped
            # child's pid cannot be reused while its group has members; once empty, ESRCH.
            _signal_group(child.pid, signal.SIGKILL)
            child.wait()


def _signal_group_leader(child: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, sig)
