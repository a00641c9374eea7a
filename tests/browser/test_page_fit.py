"""Every dashboard page at a laptop's and a phone's width: nothing overflows the viewport
sideways, the main navigation fits one row at 1366 px and opens from a menu button at 390 px.

Screenshots of each page at both widths go to test-artifacts/screenshots/fit-<width>-<page>.png
(gitignored) for a person to look at.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.management import call_command

from billing.models import UsageRecord
from tests.browser.conftest import SCREENSHOTS, Browser, expect, log_in
from training.models import Dataset, Router, TrainingRun

pytestmark = pytest.mark.browser

WIDTHS = (1366, 390)
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"


def demo_pages() -> list[tuple[str, str]]:
    """(name, path) of every dashboard page, on the seeded demo organization's data."""
    router = Router.objects.get(slug="demo-router")
    version = router.active_version
    assert version is not None
    dataset = Dataset.objects.filter(organization=router.organization).latest("created_at")
    run = TrainingRun.objects.filter(router=router).latest("created_at")
    generation = UsageRecord.objects.filter(organization=router.organization).latest("created_at")
    cascade, series = demo_pipelines(router.organization)
    return [
        ("overview", "/dashboard/"),
        ("playground", "/dashboard/playground/"),
        ("usage", "/dashboard/usage/"),
        ("generation", f"/dashboard/generations/{generation.generation_id}/"),
        ("keys", "/dashboard/keys/"),
        ("credits", "/dashboard/credits/"),
        ("provider-keys", "/dashboard/provider-keys/"),
        ("datasets", "/dashboard/datasets/"),
        ("dataset", f"/dashboard/datasets/{dataset.pk}/"),
        ("routers", "/dashboard/routers/"),
        ("router", f"/dashboard/routers/{router.slug}/"),
        ("version", f"/dashboard/routers/{router.slug}/versions/{version.number}/"),
        ("training-run", f"/dashboard/training-runs/{run.pk}/"),
        ("models", "/dashboard/models/"),
        ("pipelines", "/dashboard/pipelines/"),
        ("pipeline-cascade", f"/dashboard/pipelines/{cascade}/"),
        ("pipeline-series", f"/dashboard/pipelines/{series}/"),
        ("organization", "/dashboard/organization/"),
        ("docs", "/dashboard/docs/"),
        ("not-found", "/dashboard/generations/gen-none/"),
    ]


def demo_pipelines(organization: Any) -> tuple[str, str]:
    """A cascade gated by the demo router (its page draws the report's chart) and a series
    with a long template, on the demo's simulated models."""
    from routing.pipeline_api import pipeline_create

    gate = {"type": "router_score", "router": "demo-router", "min_score": 0.5}
    cascade = pipeline_create(organization, slug="demo-cascade", name="Cheap first", definition={
        "kind": "cascade", "steps": [
            {"model": "demo/small", "pre_gate": gate, "gate": {"type": "regex", "pattern": "^\\S+"}},
            {"model": "demo/medium", "pre_gate": gate, "gate": {"type": "json"}},
            {"model": "demo/large"}]})  # fmt: skip
    template = "Improve this draft, keep its facts and tone: {previous} " * 4
    series = pipeline_create(organization, slug="demo-series", name="Draft then refine", definition={
        "kind": "series", "steps": [{"model": "demo/small"},
                                    {"model": "demo/large", "template": template}]})  # fmt: skip
    return cascade.slug, series.slug


def check(tab: Browser, width: int, name: str) -> None:
    """No horizontal overflow; a full-page screenshot for the eye."""
    overflow = tab.page.evaluate(OVERFLOW)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SCREENSHOTS / f"fit-{width}-{name}.png"), full_page=True)
    assert overflow <= 0, f"{name} at {width} px overflows by {overflow} px"


def nav_fits_one_row(tab: Browser) -> None:
    tops = tab.page.locator("nav[aria-label=Main] a").evaluate_all(
        "links => links.map(a => Math.round(a.getBoundingClientRect().top))"
    )
    assert len(set(tops)) == 1, tops
    assert tab.page.locator("header.topbar").bounding_box()["height"] < 70


def test_signed_out_pages_fit_both_widths(browser: Browser) -> None:
    for width in WIDTHS:
        browser.page.set_viewport_size({"width": width, "height": 900})
        for name, path in (
            ("landing", "/"),
            ("login", "/accounts/login/"),
            ("signup", "/accounts/signup/"),
        ):
            browser.page.goto(path)
            check(browser, width, name)
        browser.page.goto("/")
        expect(browser.page.get_by_role("link", name="Create an account").first).to_be_visible()
    assert browser.errors == []


def test_every_dashboard_page_fits_a_laptop_and_a_phone(browser: Browser, settings: Any) -> None:
    call_command("seed_demo")
    pages = demo_pages()
    page = browser.page
    log_in(browser, "demo@routerhub.local", "routerhub-demo")
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for name, path in pages:
            page.goto(path)
            if width == 1366:
                nav_fits_one_row(browser)
            check(browser, width, name)
        # The playground with a reply, and its compare view with two columns.
        page.goto("/dashboard/playground/")
        page.get_by_label("Message").fill("Explain routing in two sentences.")
        page.get_by_role("button", name="Send").click()
        expect(page.locator("#pg-log .turn-meta")).to_have_count(1)
        check(browser, width, "playground-reply")
        page.get_by_role("tab", name="Compare").click()
        page.get_by_role("button", name="Compare", exact=True).click()
        expect(page.locator("#pg-compare-results [data-field=generation]:visible")).to_have_count(2)
        check(browser, width, "playground-compare")
    # At a phone's width the navigation is behind a menu button.
    main_nav = page.get_by_role("navigation", name="Main")
    expect(main_nav).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(main_nav.get_by_role("link", name="Usage")).to_be_visible()
    check(browser, 390, "menu-open")
    main_nav.get_by_role("link", name="Usage").click()
    expect(page).to_have_url(re.compile(r"/dashboard/usage/$"))
    assert browser.errors == []
