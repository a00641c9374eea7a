"""No API key, provider secret or prompt text in any log: the gateway's failure paths with a
canary prompt, the scanner itself, and the scan of the whole session's logs (run last)."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.log_hygiene import (
    CANARY_PROMPT,
    SENTINEL,
    SessionLogCapture,
    capture_current,
    capture_mark,
    captured_lines,
    leaks_find,
    leaks_in_folder,
    registered,
    secret_register,
)
from tests.routing.servers import gateway_idle
from tests.routing.world import PLATFORM_KEYS, World, endpoint, model, provider

FAKE_FULL_KEY = "rh-live-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v"


# --- the scanner can fail -----------------------------------------------------------------------


def test_the_scanner_finds_a_registered_secret_logged_as_an_argument_or_in_a_traceback(
    tmp_path: Path,
) -> None:
    capture = SessionLogCapture(tmp_path)
    logger = logging.getLogger("tests.scanner")
    logger.addHandler(capture)
    logger.propagate = False
    try:
        logger.info("calling upstream with %s", "sk-scanner-argument-secret")
        try:
            raise ValueError("bad key sk-scanner-traceback-secret")
        except ValueError:
            logger.exception("request failed")
        logger.info("nothing to see: rh-live-AbCdEfGh (display prefix)")
    finally:
        logger.removeHandler(capture)
        logger.propagate = True
        capture.finish()
    secrets = {
        "sk-scanner-argument-secret": "provider secret",
        "sk-scanner-traceback-secret": "provider secret",
        "sk-never-logged-secret": "provider secret",
    }

    leaks = leaks_in_folder(tmp_path, secrets)

    assert sorted(leak.line.strip() for leak in leaks) == [
        "INFO tests.scanner calling upstream with sk-scanner-argument-secret",
        "ValueError: bad key sk-scanner-traceback-secret",
        'raise ValueError("bad key sk-scanner-traceback-secret")',  # the traceback's source line
    ]


def test_the_scanner_flags_any_full_api_key_even_unregistered_but_not_a_display_prefix() -> None:
    lines = [f"authenticating {FAKE_FULL_KEY}", "key rh-live-A1b2C3d4 used", "prompt was hi"]

    leaks = leaks_find(lines, {"hi there, a long enough prompt": "prompt"}, "test")

    assert [(leak.line_number, leak.what) for leak in leaks] == [(1, "full API key")]


def test_the_session_capture_is_installed_on_the_root_logger() -> None:
    capture = capture_current()

    assert capture is not None and capture in logging.getLogger().handlers
    logging.getLogger("routing.gateway").warning("capture check %s", "f00d")
    assert "WARNING routing.gateway capture check f00d" in captured_lines()


# --- the gateway's failure paths do not log the prompt or credentials ---------------------------


def _faulty_catalog(world: World) -> None:
    world.catalog({
        "providers": [provider("echoing", "openai", world.fake_url)],
        "models": [model("test/broken"), model("test/echo-auth"), model("test/echo-400"),
                   model("test/midstream")],
        "endpoints": [
            endpoint("test/broken", "fake-openai", "gpt@status=500"),
            endpoint("test/broken", "fake-anthropic", "claude@status=503", "3", "15"),
            endpoint("test/broken", "fake-gemini", "gemini@malformed", "3", "15"),
            endpoint("test/broken", "fake-openai-b", "gpt@timeout", "4", "16"),
            # A provider that quotes our credential and the request in a retryable error, then
            # a healthy fallback.
            endpoint("test/echo-auth", "echoing", "gpt@status=401,echo", "0.1", "0.2"),
            endpoint("test/echo-auth", "fake-anthropic", "claude-sonnet-4-5", "3", "15"),
            endpoint("test/echo-400", "echoing", "gpt@status=400,echo"),
            endpoint("test/midstream", "fake-openai", "gpt@disconnect_after=2"),
        ],
    })  # fmt: skip


def _chat(world: World, model_id: str, *, key: str | None = None, **extra: Any) -> httpx.Response:
    body = {"model": model_id, "messages": [{"role": "user", "content": CANARY_PROMPT}], **extra}
    return httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key or world.key}"},
        json=body,
        timeout=20,
    )


def test_gateway_failures_log_neither_the_prompt_nor_any_key(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.5
    _faulty_catalog(world)
    mark = capture_mark()

    exhausted = _chat(world, "test/broken")
    fell_back = _chat(world, "test/echo-auth")
    rejected = _chat(world, "test/echo-400")
    midstream = _chat(world, "test/midstream", stream=True)
    invalid = _chat(world, "test/gpt", max_tokens=-1)
    unknown_key = _chat(world, "test/gpt", key=FAKE_FULL_KEY)
    anthropic = httpx.post(
        f"{world.gateway_url}/v1/messages",
        headers={"x-api-key": world.key, "anthropic-version": "2023-06-01"},
        json={"model": "test/broken", "max_tokens": 50,
              "messages": [{"role": "user", "content": CANARY_PROMPT}]},
        timeout=20,
    )  # fmt: skip
    gateway_idle()

    statuses = [r.status_code for r in (exhausted, fell_back, rejected, midstream, invalid,
                                        unknown_key, anthropic)]  # fmt: skip
    assert statuses == [502, 200, 400, 200, 400, 401, 502]
    assert "mid-stream" in midstream.text
    upstream_bodies = str([r.get("body") for r in world.fake.requests])
    assert upstream_bodies.count(CANARY_PROMPT) >= 8  # the prompt did travel upstream
    # The client sees what the provider said, but never our platform credential.
    for response in (fell_back, rejected):
        assert "incorrect API key provided" in response.text
        assert PLATFORM_KEYS["OPENAI_API_KEY"] not in response.text
    secrets = {CANARY_PROMPT: "prompt", world.key: "API key", FAKE_FULL_KEY: "API key"}
    secrets |= dict.fromkeys(PLATFORM_KEYS.values(), "platform provider key")
    logged = captured_lines(since=mark)
    assert logged, "the failures logged nothing at all: is the capture working?"
    assert leaks_find(logged, secrets, "session.log") == []


# --- the scan of the whole session ----------------------------------------------------------------


@pytest.mark.last
def test_no_registered_secret_or_prompt_appears_in_the_logs_of_the_whole_session() -> None:
    capture = capture_current()
    assert capture is not None, "the session log capture was not started (tests/conftest.py)"
    assert capture in logging.getLogger().handlers, "something removed the session log capture"
    assert SENTINEL in "".join(captured_lines()), "the session log lost its first record"

    leaks = leaks_in_folder(capture.folder, registered())

    report = "\n".join(
        f"{leak.source}:{leak.line_number} {leak.what}: {leak.line}" for leak in leaks
    )
    assert not leaks, f"{len(leaks)} secret(s) or prompt(s) in the logs:\n{report}"


# Registered so that the session scan also looks for the canary when only part of the suite runs.
secret_register(CANARY_PROMPT, "prompt")


# --- what the configured console handler writes ----------------------------------------------


@contextlib.contextmanager
def console_written() -> Iterator[io.StringIO]:
    """What settings.LOGGING's console handler (the one behind ``RedactSecrets``) writes inside
    the block."""
    from routerhub.logs import RedactSecrets

    console = next(
        h
        for h in logging.getLogger().handlers
        if any(isinstance(f, RedactSecrets) for f in h.filters)
    )
    written = io.StringIO()
    previous = console.setStream(written)  # type: ignore[attr-defined]
    try:
        yield written
    finally:
        console.setStream(previous)  # type: ignore[attr-defined]


# --- bearer tokens in URLs -----------------------------------------------------------------------


@pytest.mark.django_db
def test_tokens_in_urls_and_api_keys_are_redacted_from_the_log(client: Any) -> None:
    """Invitation, confirmation and reset links are secrets while valid; Django logs every 4xx
    with its path, and the console handler must not write them (routerhub/logs.py)."""
    from django.test import Client

    token = "Zq7" + "x" * 30
    with console_written() as written:
        Client(enforce_csrf_checks=True).post(f"/invitations/{token}/")  # 403: no CSRF token
        client.get(f"/invitations/{token}/not-a-page")  # 404
        client.get(f"/accounts/confirm-email/{token}/missing/")  # 404
        logging.getLogger("tests.redaction").warning(
            "client said: Authorization: Bearer %s, key %s", token, FAKE_FULL_KEY
        )
    log = written.getvalue()
    assert log.count("[redacted]") >= 5, log
    assert "Forbidden" in log and "Not Found: /accounts/confirm-email/[redacted]/" in log, log
    assert token not in log and FAKE_FULL_KEY not in log, log


def test_database_errors_in_tracebacks_do_not_quote_the_refused_values() -> None:
    """PostgreSQL quotes the row it refused (a logged prompt, a key) in DETAIL/LINE/CONTEXT."""
    secret = "the-prompt-" + "q" * 20
    error = (
        "unsupported Unicode escape sequence\n"
        f"LINE 1: ...\"prompt\" = E'{secret}'\n"
        f"DETAIL:  Key (generation_id)=({secret}) already exists.\n"
        f"CONTEXT:  JSON data, line 1: {secret}"
    )
    with console_written() as written:
        try:
            raise ValueError(error)
        except ValueError:
            logging.getLogger("tests.redaction").exception("insert failed: %s", error)
    log = written.getvalue()
    assert "unsupported Unicode escape sequence" in log and "Traceback" in log, log
    assert secret not in log, log
    assert log.count("[redacted]") >= 6, log
