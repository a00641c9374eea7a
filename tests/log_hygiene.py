"""The whole session's logs, and the secrets and prompts that must never appear in them.

``tests/conftest.py`` installs ``SessionLogCapture`` on the root logger when the session starts:
every record that passes the product's own log levels is written, formatted with its arguments
and traceback, to ``session.log`` in a session folder. Subprocesses that tests start (a second
gateway, a Celery worker, localstripe) write their output to the same folder
(``subprocess_log``). Factories and fixtures register what they create (``secret_register``):
API key plaintexts, provider secrets, platform provider keys, and the prompts sent through the
gateway (``CANARY_PROMPT`` and the long prompts the fake upstream received). The last test of
the session (``tests/security/test_log_hygiene.py``) fails if any of them, or anything shaped
like a full RouterHub API key, appears in any captured log.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# A prompt that gateway tests send through every failure path; it must reach no log.
CANARY_PROMPT = "canary prompt 5d1e: the plum tree blossoms at midnight in Vilnius"
# A full key is its scope prefix and 43 url-safe characters (``secrets.token_urlsafe(32)``);
# the 16-character display prefix alone is fine to log.
FULL_API_KEY = re.compile(r"rh-(?:live|mgmt)-[A-Za-z0-9_-]{43}")
# Shorter strings would match by coincidence ("hi", "Hello"); prompts are registered from this
# length, secrets at any length of at least 8 characters.
MIN_PROMPT_CHARS = 24
MIN_SECRET_CHARS = 8
SENTINEL = "log capture sentinel 0b4f"

_registered: dict[str, str] = {}  # value -> what it is
_lock = threading.Lock()


def secret_register(value: str, what: str = "secret") -> str:
    """Remember a value that must never be logged; returns it for inline use."""
    if len(value) >= MIN_SECRET_CHARS:
        with _lock:
            _registered.setdefault(value, what)
    return value


def prompt_register(text: str) -> None:
    if len(text) >= MIN_PROMPT_CHARS:
        with _lock:
            _registered.setdefault(text, "prompt")


def prompts_register_from(body: Any) -> None:
    """Register the message texts of an upstream request body (any of the three wire formats)."""
    if isinstance(body, dict):
        for name, value in body.items():
            if name in {"content", "text"} and isinstance(value, str):
                prompt_register(value)
            else:
                prompts_register_from(value)
    elif isinstance(body, list):
        for item in body:
            prompts_register_from(item)


def registered() -> dict[str, str]:
    with _lock:
        return dict(_registered)


@dataclass(frozen=True)
class Leak:
    source: str
    line_number: int
    what: str
    line: str


def leaks_find(lines: Iterable[str], secrets: dict[str, str], source: str) -> list[Leak]:
    """Every line that contains a registered value or a full API key."""
    leaks = []
    for number, line in enumerate(lines, 1):
        for value, what in secrets.items():
            if value in line:
                leaks.append(Leak(source, number, what, line.rstrip()[:300]))
        if FULL_API_KEY.search(line):
            leaks.append(Leak(source, number, "full API key", line.rstrip()[:300]))
    return leaks


def leaks_in_folder(folder: Path, secrets: dict[str, str]) -> list[Leak]:
    leaks: list[Leak] = []
    for path in sorted(folder.rglob("*.log")):
        with path.open(encoding="utf-8", errors="replace") as lines:
            leaks.extend(leaks_find(lines, secrets, path.name))
    return leaks


class SessionLogCapture(logging.Handler):
    """Writes every record, formatted with args and exc_info, to one file for the session."""

    def __init__(self, folder: Path) -> None:
        super().__init__(level=logging.NOTSET)
        self.folder = folder
        self.path = folder / "session.log"
        self._file: IO[str] = self.path.open("a", encoding="utf-8")
        self.records = 0
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a record whose args do not fit its message still must be scanned
            text = f"{record.msg!r} {record.args!r}"
        # Handler.handle holds the handler's lock around emit: one writer at a time.
        self._file.write(text + "\n")
        self._file.flush()
        self.records += 1

    def close(self) -> None:
        # logging.config.dictConfig (uvicorn, Celery) closes every handler it finds: keep the
        # file open for the rest of the session; ``finish`` closes it.
        pass

    def finish(self) -> None:
        self._file.close()
        super().close()


class _State:
    capture: SessionLogCapture | None = None


def capture_start() -> SessionLogCapture:
    from django.conf import settings

    folder = Path(tempfile.mkdtemp(prefix="routerhub-test-logs-"))
    capture = SessionLogCapture(folder)
    logging.getLogger().addHandler(capture)
    _State.capture = capture
    # ``django.setup()`` runs again when an ASGI app is built (the gateway test servers) and
    # re-applies LOGGING, replacing the root logger's handlers: the capture is part of it.
    settings.LOGGING["handlers"]["session_capture"] = {"()": "tests.log_hygiene.capture_current"}
    settings.LOGGING["root"]["handlers"].append("session_capture")
    logging.getLogger("tests").warning(SENTINEL)
    return capture


def capture_current() -> SessionLogCapture | None:
    return _State.capture


def capture_stop(*, keep: bool) -> None:
    from django.conf import settings

    capture = _State.capture
    if capture is None:
        return
    logging.getLogger().removeHandler(capture)
    settings.LOGGING["root"]["handlers"].remove("session_capture")
    del settings.LOGGING["handlers"]["session_capture"]
    capture.finish()
    _State.capture = None
    if not keep:
        shutil.rmtree(capture.folder, ignore_errors=True)


def subprocess_log(name: str, fallback: Path) -> Path:
    """Where a subprocess started by a test writes its output: the session folder when the
    capture runs (so its output is scanned too), ``fallback`` otherwise."""
    capture = _State.capture
    folder = capture.folder if capture is not None else fallback
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(10_000):
        path = folder / f"{name}-{index}.log"
        if not path.exists():
            return path
    raise RuntimeError("too many subprocess logs")


def capture_mark() -> int:
    """A position in the session log; ``captured_lines(since=mark)`` reads what came after."""
    capture = _State.capture
    return capture.path.stat().st_size if capture is not None else 0


def captured_lines(since: int = 0) -> list[str]:
    capture = _State.capture
    if capture is None:
        return []
    with capture.path.open("rb") as file:
        file.seek(since)
        return file.read().decode(errors="replace").splitlines()
