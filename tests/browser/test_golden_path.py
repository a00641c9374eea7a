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
    """A file in its own layout (RouteLLM-like column names), mapped in the browser: demo/small
    is right on arithmetic, demo/large on writing."""
    frame = synthetic_frame(rows=150).rename(
        columns={
            "prompt": "question",
            "math-model/score": "small_correct",
            "prose-model/score": "large_v2_correct",
            "math-model/cost": "small_usd",
            "prose-model/cost": "large_v2_usd",
        }
    )
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


def sign_up_and_confirm(browser: Browser, email: str) -> None:
    page = browser.page
    page.goto("/")
    browser.shot("landing")
    page.get_by_role("link", name="Create an account").first.click()
    expect(page).to_have_url(re.compile(r"/accounts/signup/$"))
    browser.shot("signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label(re.compile(r"^Password:?$")).fill(PASSWORD)
    page.get_by_label(re.compile(r"^Password \(again\):?$")).fill(PASSWORD)
    page.locator("main form").get_by_role("button", name=re.compile("sign up", re.I)).click()
    expect(page).to_have_url(re.compile(r"/accounts/confirm-email/$"))
    browser.shot("verification-sent")
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


def create_key_and_call_it(browser: Browser) -> str:
    """Keys: create one, copy it, and make the first API request with it (starter credits)."""
    page = browser.page
    nav(browser, "Keys")
    browser.shot("keys")
    page.get_by_label("Name").fill("Backend")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key")
    expect(secret).to_have_text(re.compile(r"\S{20,}"))
    key = secret.inner_text().strip()
    copy = page.locator("button[data-copy='new-key']")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == key
    browser.shot("key-created")
    answer = page.request.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        data={"model": "demo/small", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert answer.status == 200, answer.text()
    generation: str = answer.json()["id"]
    return generation


def chat_in_the_playground(browser: Browser) -> str:
    """Two turns with a demo model, streamed, through the dashboard session (no key pasted)."""
    page = browser.page
    nav(browser, "Playground")
    browser.shot("playground")
    page.get_by_label("Model or router").select_option("demo/small")
    page.get_by_label("System prompt").fill("Answer in one short sentence.")
    page.get_by_label("Temperature").fill("0.2")
    page.get_by_label("Message").fill("What is 17 + 25?")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#pg-result")).to_be_visible()
    expect(page.locator("#pg-used")).to_have_text("demo/small")
    expect(page.locator("#pg-cost")).to_have_text(COST)
    expect(page.locator("#pg-latency")).to_have_text(re.compile(r"^\d+ ms"))
    expect(page.locator("#pg-routing")).to_be_hidden()
    page.get_by_label("Message").fill("And times two?")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#pg-log .turn")).to_have_count(4)
    expect(page.locator("#pg-log .turn.assistant .turn-meta")).to_have_count(2)
    expect(page.locator("#pg-log .turn.assistant .said").last).not_to_be_empty()
    generation = page.locator("#pg-generation").inner_text().strip()
    assert generation.startswith("gen-")
    browser.shot("playground-chat")
    return generation


def upload_with_the_mapping_ui(browser: Browser, tmp_path: Path) -> None:
    page = browser.page
    nav(browser, "Datasets")
    browser.shot("datasets")
    page.get_by_label("File").set_input_files(dataset_csv(tmp_path / "evals.csv"))
    mapping = page.locator("#mapping")
    expect(mapping).to_be_visible()
    expect(page.locator("#mapping-preview tbody tr")).to_have_count(5)
    expect(page.get_by_label("Column question holds")).to_have_value("prompt")
    expect(page.get_by_label("Column small_correct holds")).to_have_value("score")
    expect(page.get_by_label("Column small_usd holds")).to_have_value("cost")
    expect(page.get_by_label("Model id for small_correct")).to_have_value("demo/small")
    # A typo is flagged with catalog suggestions, and one click fixes it.
    typo = page.get_by_label("Model id for large_v2_correct")
    typo.fill("demo/larg")
    typo.dispatch_event("change")
    expect(page.locator("#mapping-problems")).to_contain_text("Not catalog models")
    mapping.get_by_role("button", name="demo/large", exact=True).first.click()
    expect(typo).to_have_value("demo/large")
    expect(page.get_by_label("Model id for large_v2_usd")).to_have_value("demo/large")
    expect(page.locator("#mapping-problems li")).to_have_count(0)
    browser.shot("dataset-mapping")
    page.get_by_label("Name").fill("Demo prompts")
    page.get_by_role("button", name="Upload").click()
    expect(page).to_have_url(re.compile(r"/dashboard/datasets/\d+/$"))
    expect(page.locator("h1 .badge")).to_have_text("ready", timeout=TIMEOUT_MS * 2)
    expect(page.locator("main")).to_contain_text("demo/large")
    browser.shot("dataset-ready")


def train_from_the_dataset(browser: Browser) -> None:
    page = browser.page
    train = page.locator("#train-from-dataset")
    train.get_by_label("Slug").fill(ROUTER)
    expect(train.get_by_label("demo/small")).to_be_checked()
    expect(train.get_by_label("demo/large")).to_be_checked()
    train.get_by_role("button", name="Train a router").click()
    expect(page).to_have_url(re.compile(r"/dashboard/training-runs/\d+/$"))
    progress = page.get_by_role("progressbar", name="Training progress")
    expect(progress).to_have_attribute("aria-valuenow", "100", timeout=TIMEOUT_MS * 4)
    expect(page.locator("h1 [data-run-status]")).to_have_text("succeeded")
    browser.shot("training-run")
    page.get_by_role("link", name="see its report").click()
    expect(page).to_have_url(re.compile(rf"/dashboard/routers/{ROUTER}/versions/1/?$"))
    chart = page.locator("figure.chart-wrap svg")
    expect(chart).to_be_visible()
    assert chart.locator("circle, path, polyline, line").count() > 0
    expect(page.locator("#report-cost-basis")).to_contain_text("your dataset's costs")
    assert_full_width(chart)
    browser.shot("version-report")
    page.goto(f"/dashboard/routers/{ROUTER}/")
    expect(page.locator("#router-snippet pre").first).to_contain_text(f"router/{ROUTER}")
    browser.shot("router")


def compare_router_and_model(browser: Browser) -> tuple[str, str]:
    """The compare view: the router beside a model on one prompt, each with cost and latency."""
    page = browser.page
    nav(browser, "Playground")
    page.get_by_role("tab", name="Compare").click()
    page.get_by_label("Column 1").select_option(f"router/{ROUTER}")
    page.get_by_label("Column 2").select_option("demo/large")
    page.get_by_label("Prompt", exact=True).fill("Write a haiku about routers.")
    page.get_by_role("button", name="Compare", exact=True).click()
    columns = page.locator("#pg-compare-results .compare-col")
    expect(columns).to_have_count(2)
    for i in range(2):
        expect(columns.nth(i).locator("[data-field=cost]")).to_have_text(COST)
        expect(columns.nth(i).locator("[data-field=latency]")).to_have_text(re.compile(r"^\d+ ms"))
        expect(columns.nth(i).locator("[data-field=reply]")).not_to_be_empty()
    routed = columns.nth(0)
    expect(routed.locator(".compare-routing")).to_contain_text(f"router/{ROUTER} v1 chose")
    chosen = routed.locator("[data-field=model]").inner_text()
    assert chosen in {"demo/small", "demo/large"}
    browser.shot("playground-compare")
    routed.get_by_role("link", name="Generation details").click()
    expect(page).to_have_url(re.compile(r"/dashboard/generations/gen-[^/]+/$"))
    expect(page.locator("#gen-status")).to_have_text("succeeded", timeout=TIMEOUT_MS)
    expect(page.locator("#gen-model")).to_have_text(chosen)
    expect(page.locator("#gen-cost")).to_have_text(COST)
    expect(page.locator("#gen-router")).to_contain_text(f"router/{ROUTER} v1")
    expect(page.locator("#gen-routing tbody tr")).to_have_count(2)
    expect(page.locator("#gen-fallbacks")).to_contain_text("None")
    generation = page.locator("#gen-id").inner_text().strip()
    browser.shot("generation")
    return generation, chosen


def test_golden_path_from_signup_to_a_routed_request_and_its_csv(
    browser: Browser, tmp_path: Path, settings: Any
) -> None:
    # No operator step anywhere: the organization's only credits are its starter grant.
    settings.STARTER_CREDITS_USD = Decimal("5")
    page = browser.page
    # A new address each run: allauth rate-limits confirmation emails per address in the cache,
    # which outlives a run when it is Redis.
    email = f"new.user.{uuid.uuid4().hex[:8]}@example.com"

    sign_up_and_confirm(browser, email)
    api_generation = create_key_and_call_it(browser)
    chat_generation = chat_in_the_playground(browser)

    # Credits: the starter grant paid for it, and with card payments off the page says what to do.
    nav(browser, "Credits")
    expect(page.locator("#payments-off")).to_be_visible()
    starter = page.locator("table tbody tr", has_text="Starter credits for a first request")
    expect(starter).to_have_count(1)
    expect(starter).to_contain_text("$5.00")
    expect(page.get_by_role("button", name="Continue to payment")).to_have_count(0)
    browser.shot("credits-starter")

    upload_with_the_mapping_ui(browser, tmp_path)
    train_from_the_dataset(browser)
    router_generation, chosen = compare_router_and_model(browser)

    # Usage: every request, with its cost and a link to its generation page.
    nav(browser, "Usage")
    log = page.locator("#request-log")
    expect(log).to_be_visible()
    for generation, model in (
        (api_generation, "demo/small"),
        (chat_generation, "demo/small"),
        (router_generation, chosen),
    ):
        row = log.locator("tbody tr", has_text=generation)
        expect(row).to_have_count(1)
        expect(row).to_contain_text(model)
        cost = row.locator("td").last.inner_text()
        assert COST.match(cost) and Decimal(cost[1:]) > 0, cost
    expect(log.locator("tbody tr", has_text=f"router/{ROUTER}")).to_have_count(1)
    expect(log.locator("tbody tr", has_text="Playground")).to_have_count(4)
    assert_full_width(page.locator("main .card svg.chart").first)
    browser.shot("usage")

    # Export CSV: the download holds the generations.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    assert download.failure() is None
    exported = Path(download.path()).read_text()
    for generation in (api_generation, chat_generation, router_generation):
        assert generation in exported, exported

    # No page asked any host but this server for anything.
    assert len(browser.requests) > 20
    assert browser.foreign_requests() == []
    assert browser.errors == []
