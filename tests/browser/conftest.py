"""Browser tests: Debian's Chromium driven by Playwright against the whole app over real HTTP.

The full ASGI app (dashboard, /api, /v1 and static files) and the fake upstream each run in a
``ServerThread``; the demo catalog points at the fake upstream, Celery runs eagerly in the
server's threads and media goes to a temporary directory. Without Chromium or Playwright the
tests are skipped with a loud reason (failed under REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import service_missing

try:
    from playwright.sync_api import expect
except ImportError:  # the ``chromium`` fixture skips (or fails) every browser test with why
    expect = None  # type: ignore[assignment]
from tests.routing.servers import ServerThread, gateway_idle, usage_stream_settled
from tests.serving.conftest import (
    _fresh_gateway_state,
    _fresh_router_caches,
    eager_celery,
    fake_server,
    gateway_server,
    media,
)

__all__ = [
    "_fresh_gateway_state",
    "_fresh_router_caches",
    "eager_celery",
    "fake_server",
    "gateway_server",
    "media",
]


CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")  # Debian's, never downloaded
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
TIMEOUT_MS = 15_000  # every wait in the browser tests has a deadline


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the session (Debian's, never a downloaded one)."""
    if not os.path.exists(CHROMIUM):
        service_missing(
            f"BROWSER TESTS SKIPPED: {CHROMIUM} not found. Install Debian's chromium "
            "(apt-get install chromium, or `make test` as root) to run them."
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_missing(
            "BROWSER TESTS SKIPPED: the playwright Python package is not installed "
            "(pip install -e '.[dev]')."
        )
    expect.set_options(timeout=TIMEOUT_MS)
    # Playwright's sync API keeps an event loop running in the main thread while the browser is
    # open; the tests' own ORM calls are synchronous. Set only here (browser tests run last,
    # see tests/conftest.py) so the rest of the suite keeps Django's async-safety check.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except Exception as exc:  # a broken install must not pass silently
        playwright.stop()
        service_missing(f"BROWSER TESTS SKIPPED: {CHROMIUM} did not start: {exc}")
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture(scope="session")
def _close_server_connections(django_db_setup: None) -> Iterator[None]:
    """After the servers stop, close the database connections their sync code left open.

    Sync code called outside a request runs in asgiref's process-wide executor thread, whose
    connections would otherwise keep PostgreSQL from dropping the test database.
    """
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture
def site(
    _close_server_connections: None,
    transactional_db: None,
    settings: Any,
    eager_celery: None,
    media: Path,
    fake_server: ServerThread,
    gateway_server: ServerThread,
) -> Iterator[ServerThread]:
    """The live server, with the demo catalog answered by the fake upstream."""
    from django.core import mail

    from accounts.models import Organization
    from routing.demo import seed_demo_provider
    from routing.gateway.catalog_cache import catalog_cache_clear

    settings.DEMO_UPSTREAM_URL = fake_server.url
    settings.SITE_URL = gateway_server.url
    # The catalog seeder takes the demo organization for the seeders' common signature but
    # does not use it; the catalog (real models plus demo/*) is global.
    seed_demo_provider(Organization(name="Demo"))
    catalog_cache_clear()
    fake_server.server.config.app.requests.clear()
    mail.outbox.clear()
    yield gateway_server
    # Settlement runs after a response is sent: let the gateway finish before the database
    # is flushed under it.
    try:
        gateway_idle()
    finally:
        usage_stream_settled(settings.REDIS_URL)


@dataclass
class Browser:
    """A browser tab on the live server that records every request and saves screenshots."""

    page: Any
    base_url: str
    prefix: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    shots: list[Path] = field(default_factory=list)
    # What the Content-Security-Policy blocked (Chromium says so on the console): an inline
    # script, handler or style attribute, or a foreign asset, that a page then lacks.
    csp_violations: list[str] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        path = SCREENSHOTS / f"{self.prefix}{len(self.shots) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def foreign_requests(self) -> list[str]:
        """Requests to any host but the live server (data: URLs never reach the network)."""
        own = urlsplit(self.base_url).netloc
        return [
            url
            for url in self.requests
            if not url.startswith("data:") and urlsplit(url).netloc != own
        ]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item, so a failed test can leave a screenshot."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


def _browser(
    chromium: Any, site: ServerThread, request: pytest.FixtureRequest, prefix: str
) -> Iterator[Browser]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for pattern in (f"{prefix}[0-9][0-9]-*.png", f"{prefix}FAILED-*.png"):
        for old in SCREENSHOTS.glob(pattern):
            old.unlink(missing_ok=True)
    context = chromium.new_context(
        base_url=site.url, accept_downloads=True, viewport={"width": 1280, "height": 900}
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    tab = Browser(page=page, base_url=site.url, prefix=prefix)
    context.on("request", lambda request: tab.requests.append(request.url))
    page.on("pageerror", lambda error: tab.errors.append(str(error)))
    page.on("console", lambda message: _csp_violation(tab, message.text))
    try:
        yield tab
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            page.screenshot(path=str(SCREENSHOTS / f"{prefix}FAILED-{request.node.name}.png"))
        assert tab.csp_violations == [], f"the Content-Security-Policy blocked {tab.csp_violations}"
    finally:
        context.close()


def _csp_violation(tab: Browser, text: str) -> None:
    if "Content Security Policy" in text:
        tab.csp_violations.append(f"{tab.page.url}: {text}")


@pytest.fixture
def browser(chromium: Any, site: ServerThread, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """A fresh browser context (no cookies) whose screenshots are NN-name.png."""
    yield from _browser(chromium, site, request, prefix="")


@pytest.fixture
def roles_browser(
    chromium: Any, site: ServerThread, request: pytest.FixtureRequest
) -> Iterator[Browser]:
    """Like ``browser``, with screenshots named roles-<who>-NN-name.png (who: from the test)."""
    who = re.sub(r"^test_(an?_)?", "", request.node.name).split("_")[0]
    yield from _browser(chromium, site, request, prefix=f"roles-{who}-")


def log_in(tab: Browser, email: str, password: str) -> None:
    """Log in through allauth's form, as a person would."""
    tab.page.goto("/accounts/login/")
    tab.page.get_by_label("Email").fill(email)
    tab.page.get_by_label("Password").fill(password)
    tab.page.locator("main form").get_by_role("button", name=re.compile("sign in", re.I)).click()
    expect(tab.page).to_have_url(re.compile(r"/dashboard/$"))


def link_in(body: str) -> str:
    match = re.search(r"https?://\S+", body)
    assert match, f"no link in the email:\n{body}"
    return match.group(0)
