"""A tab-separated export through the dashboard's column-mapping UI: the preview splits it as the
server does, and the upload becomes ready (the UI read one column and mapped 'prompt\\tm0/score…'
as the prompt, which the server then refused)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import TIMEOUT_MS, Browser, _browser, expect, log_in
from tests.factories import PASSWORD, Tenants, tenants_make
from tests.routing.servers import ServerThread
from tests.training.shapes import base_frame

pytestmark = pytest.mark.browser


@pytest.fixture
def separators_browser(
    chromium: Any, site: ServerThread, request: pytest.FixtureRequest
) -> Iterator[Browser]:
    yield from _browser(chromium, site, request, prefix="separators-")


@pytest.fixture
def acme(site: ServerThread) -> Tenants:
    return tenants_make()


def uploaded_ready(tab: Browser, name: str) -> None:
    """Upload the chosen file under ``name``; its page shows it ready, with no browser errors."""
    page = tab.page
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Upload").click()
    expect(page).to_have_url(re.compile(r"/dashboard/datasets/\d+/$"))
    expect(page.locator("h1 .badge")).to_have_text("ready", timeout=TIMEOUT_MS * 2)
    assert tab.errors == []


def test_a_tab_separated_file_is_previewed_in_columns_and_uploads_ready(
    separators_browser: Browser, acme: Tenants, tmp_path: Path
) -> None:
    path = tmp_path / "evals.tsv"
    base_frame(rows=60).drop(columns=["family"]).to_csv(path, index=False, sep="\t")
    page = separators_browser.page
    log_in(separators_browser, acme.admin.email, PASSWORD)
    page.goto("/dashboard/datasets/")

    page.get_by_label("File").set_input_files(path)

    expect(page.locator("#mapping")).to_be_visible()
    expect(page.get_by_label("Column prompt holds")).to_have_value("prompt")
    expect(page.get_by_label("Column m1/score holds")).to_have_value("score")
    expect(page.get_by_label("Column m1/cost holds")).to_have_value("cost")
    separators_browser.shot("tsv-mapping")
    uploaded_ready(separators_browser, "Tab-separated")


def test_a_quoted_comma_in_a_tab_separated_header_is_split_as_the_server_splits_it(
    separators_browser: Browser, acme: Tenants, tmp_path: Path
) -> None:
    """The preview chose a comma whenever the header line held one, even inside quotes: it showed
    '"prompt' and ' text"\\tm0/score\\tm1/score' where the server reads three tab-separated columns."""
    path = tmp_path / "evals.tsv"
    lines = ['"prompt, text"\tm0/score\tm1/score']
    lines += [f'"Question {i}, briefly"\t{i % 2}\t{(i // 2) % 2}' for i in range(60)]
    path.write_text("\n".join(lines) + "\n")
    page = separators_browser.page
    log_in(separators_browser, acme.admin.email, PASSWORD)
    page.goto("/dashboard/datasets/")

    page.get_by_label("File").set_input_files(path)

    expect(page.locator("#mapping-preview th")).to_have_text(
        ["prompt, text", "m0/score", "m1/score"]
    )
    expect(page.get_by_label("Column m0/score holds")).to_have_value("score")
    expect(page.get_by_label("Column m1/score holds")).to_have_value("score")
    page.get_by_label("Column prompt, text holds").select_option("prompt")
    separators_browser.shot("quoted-comma-tsv-mapping")
    uploaded_ready(separators_browser, "Quoted comma")


def test_decimal_commas_in_a_semicolon_file_are_previewed_as_scores_and_costs(
    separators_browser: Browser, acme: Tenants, tmp_path: Path
) -> None:
    """'0,75' did not look like a number to the preview, which left those columns ignored."""
    path = tmp_path / "evals.csv"
    frame = base_frame(rows=60).drop(columns=["family"])
    frame["m1/score"] = frame["m1/score"] * 0.5 + 0.25  # 0,25 or 0,75
    frame.to_csv(path, index=False, sep=";", decimal=",")
    assert ";0,75;" in path.read_text()
    page = separators_browser.page
    log_in(separators_browser, acme.admin.email, PASSWORD)
    page.goto("/dashboard/datasets/")

    page.get_by_label("File").set_input_files(path)

    expect(page.get_by_label("Column m1/score holds")).to_have_value("score")
    expect(page.get_by_label("Column m1/cost holds")).to_have_value("cost")
    uploaded_ready(separators_browser, "Decimal commas")
