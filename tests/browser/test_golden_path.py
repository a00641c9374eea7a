"""The golden path in a real browser: a new user from signup to a routed request and its bill."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core import mail

from tests.browser.conftest import TIMEOUT_MS, Browser, expect, link_in
from tests.training.conftest import synthetic_frame

pytestmark = pytest.mark.browser

PASSWORD = "a-long-browser-password-7"
ROUTER = "demo-router"
COST = re.compile(r"^\$\d+\.\d+$")


def dataset_csv(path: Path) -> Path:
    """Not Diamond layout: demo/small is right on arithmetic, demo/large on writing."""
    frame = synthetic_frame(rows=150).rename(
        columns=lambda c: c.replace("math-model", "demo/small").replace("prose-model", "demo/large")
    )
    assert list(frame.columns) == [
        "prompt",
        "demo/small/score",
        "demo/large/score",
        "demo/small/cost",
        "demo/large/cost",
    ]
    frame.to_csv(path, index=False)
    return path


def assert_full_width(chart: Any) -> None:
    """A chart spans its card (less the card's padding), whatever the window's width."""
    card = chart.locator("xpath=ancestor::div[contains(@class, 'card')][1]").bounding_box()
    drawn = chart.bounding_box()
    assert drawn["width"] >= card["width"] * 0.9, (drawn, card)


def nav(tab: Browser, name: str) -> None:
    link = tab.page.get_by_role("navigation", name="Main").get_by_role(
        "link", name=name, exact=True
    )
    link.click()
    expect(link).to_have_attribute("aria-current", "page")


def test_golden_path_from_signup_to_a_routed_request_and_its_csv(
    browser: Browser, tmp_path: Path, settings: Any
) -> None:
    # No operator step anywhere: the organization's only credits are its starter grant.
    settings.STARTER_CREDITS_USD = Decimal("5")
    page = browser.page
    # A new address each run: allauth rate-limits confirmation emails per address in the cache,
    # which outlives a run when it is Redis.
    email = f"new.user.{uuid.uuid4().hex[:8]}@example.com"

    # Sign up.
    page.goto("/accounts/signup/")
    browser.shot("signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label(re.compile(r"^Password:?$")).fill(PASSWORD)
    page.get_by_label(re.compile(r"^Password \(again\):?$")).fill(PASSWORD)
    page.locator("main form").get_by_role("button", name=re.compile("sign up", re.I)).click()
    expect(page).to_have_url(re.compile(r"/accounts/confirm-email/$"))
    browser.shot("verification-sent")

    # Confirm the email through the link in the message.
    messages = [m for m in mail.outbox if email in m.to]
    assert len(messages) == 1, [(m.to, m.subject) for m in mail.outbox]
    link = link_in(messages[0].body)
    assert link.startswith(f"{browser.base_url}/accounts/confirm-email/"), link
    page.goto(link)
    browser.shot("confirm-email")
    page.locator("main form").get_by_role("button", name=re.compile("confirm", re.I)).click()

    # Confirming signs the newcomer in: the overview shows the starter credits.
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    expect(page.locator("main")).to_contain_text("$5.00")
    browser.shot("overview")

    # Keys: create one and copy it.
    nav(browser, "Keys")
    browser.shot("keys")
    page.get_by_label("Name").fill("Playground")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key")
    expect(secret).to_have_text(re.compile(r"\S{20,}"))
    key = secret.inner_text().strip()
    copy = page.locator("button[data-copy='new-key']")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == key
    browser.shot("key-created")

    # Playground: a demo model.
    nav(browser, "Playground")
    browser.shot("playground")
    page.get_by_label("Model or router").select_option("demo/small")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#pg-result")).to_be_visible()
    expect(page.locator("#pg-used")).to_have_text("demo/small")
    expect(page.locator("#pg-cost")).to_have_text(COST)
    expect(page.locator("#pg-latency")).to_have_text(re.compile(r"^\d+ ms"))
    expect(page.locator("#pg-reply")).not_to_be_empty()
    expect(page.locator("#pg-routing")).to_be_hidden()
    model_generation = page.locator("#pg-generation").inner_text().strip()
    assert model_generation
    browser.shot("playground-model-reply")

    # Credits: the starter grant paid for it, and with card payments off the page says what to do.
    nav(browser, "Credits")
    expect(page.locator("#payments-off")).to_be_visible()
    starter = page.locator("table tbody tr", has_text="Starter credits for a first request")
    expect(starter).to_have_count(1)
    expect(starter).to_contain_text("$5.00")
    expect(page.get_by_role("button", name="Continue to payment")).to_have_count(0)
    browser.shot("credits-starter")

    # Datasets: upload a CSV and see it validated.
    nav(browser, "Datasets")
    browser.shot("datasets")
    page.get_by_label("File").set_input_files(dataset_csv(tmp_path / "demo-prompts.csv"))
    page.get_by_label("Name").fill("Demo prompts")
    page.get_by_role("button", name="Upload").click()
    expect(page).to_have_url(re.compile(r"/dashboard/datasets/\d+/$"))
    expect(page.locator("h1 .badge")).to_have_text("ready", timeout=TIMEOUT_MS * 2)
    expect(page.locator("main")).to_contain_text("demo/small")
    browser.shot("dataset-ready")

    # Routers: create one over demo/small and demo/large and train it.
    nav(browser, "Routers")
    browser.shot("routers")
    page.get_by_label("Slug").fill(ROUTER)
    page.get_by_label("Name").fill("Demo router")
    page.get_by_label("Candidates").fill("demo/small, demo/large")
    page.get_by_role("button", name="Create router").click()
    expect(page).to_have_url(re.compile(rf"/dashboard/routers/{ROUTER}/$"))
    browser.shot("router")
    page.get_by_label(re.compile(r"^Dataset:?$")).select_option(label="Demo prompts")
    page.get_by_role("button", name="Start training").click()
    expect(page).to_have_url(re.compile(r"/dashboard/training-runs/\d+/$"))
    progress = page.get_by_role("progressbar", name="Training progress")
    expect(progress).to_have_attribute("aria-valuenow", "100", timeout=TIMEOUT_MS * 4)
    expect(page.locator("[data-run-percent]")).to_have_text("100")
    expect(page.locator("h1 [data-run-status]")).to_have_text("succeeded")
    browser.shot("training-run")

    # The version report and its chart.
    page.get_by_role("link", name="see its report").click()
    expect(page).to_have_url(re.compile(rf"/dashboard/routers/{ROUTER}/versions/1/?$"))
    chart = page.locator("figure.chart-wrap svg")
    expect(chart).to_be_visible()
    assert chart.locator("circle, path, polyline, line").count() > 0
    expect(page.locator("#report-cost-basis")).to_contain_text("your dataset's costs")
    assert_full_width(chart)
    browser.shot("version-report")

    # Playground again: through the router, with its decision table.
    nav(browser, "Playground")
    page.get_by_label("Model or router").select_option(f"router/{ROUTER}")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#pg-routing")).to_be_visible()
    expect(page.locator("#pg-router")).to_have_text(f"router/{ROUTER} v1")
    ranked = page.locator("#pg-ranked tr")
    expect(ranked).to_have_count(2)
    assert sorted(ranked.nth(i).locator("td").nth(1).inner_text() for i in range(2)) == [
        "demo/large",
        "demo/small",
    ]
    chosen = page.locator("#pg-chosen").inner_text()
    assert chosen in {"demo/small", "demo/large"}
    expect(page.locator("#pg-used")).to_have_text(chosen)
    expect(page.locator("#pg-cost")).to_have_text(COST)
    expect(page.locator("#pg-cost-basis")).to_contain_text("at catalog prices")
    router_generation = page.locator("#pg-generation").inner_text().strip()
    assert router_generation and router_generation != model_generation
    browser.shot("playground-router-reply")

    # Usage: both requests, with their costs.
    nav(browser, "Usage")
    log = page.locator("#request-log")
    expect(log).to_be_visible()
    for generation, model in ((model_generation, "demo/small"), (router_generation, chosen)):
        row = log.locator("tbody tr", has_text=generation)
        expect(row).to_have_count(1)
        expect(row).to_contain_text(model)
        cost = row.locator("td").last.inner_text()
        assert COST.match(cost) and Decimal(cost[1:]) > 0, cost
    expect(log.locator("tbody tr", has_text=f"router/{ROUTER}")).to_have_count(1)
    assert_full_width(page.locator("main .card svg.chart").first)
    browser.shot("usage")

    # Export CSV: the download holds both generations.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    assert download.failure() is None
    exported = Path(download.path()).read_text()
    assert model_generation in exported and router_generation in exported, exported

    # No page asked any host but this server for anything.
    assert len(browser.requests) > 20
    assert browser.foreign_requests() == []
    assert browser.errors == []
