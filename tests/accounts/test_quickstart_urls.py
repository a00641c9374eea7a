"""Quickstarts and "Try it" snippets show the address this server is reached at, for the key's scope."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx
import pytest

from tests.factories import dashboard_client

pytestmark = pytest.mark.django_db

HOST = "rh.example.test:9000"


def _page(tenants: Any, path: str, data: dict[str, str] | None = None) -> str:
    client = dashboard_client(tenants.owner, tenants.organization)
    if data is None:
        response = client.get(path, HTTP_HOST=HOST)
    else:
        response = client.post(path, data, HTTP_HOST=HOST)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def test_overview_quickstart_uses_the_host_the_server_was_reached_at(tenants: Any) -> None:
    page = _page(tenants, "/dashboard/")

    assert f"http://{HOST}/v1" in page
    assert "127.0.0.1:8000" not in page


def test_a_new_keys_try_it_snippet_has_the_full_url(tenants: Any) -> None:
    page = _page(tenants, "/dashboard/keys/", {"name": "first", "scope": "inference"})

    assert f"curl http://{HOST}/v1/chat/completions" in page
    assert f'base_url="http://{HOST}/v1"' in page


def test_site_url_when_set_wins_over_the_request_host(tenants: Any, settings: Any) -> None:
    settings.SITE_URL, settings.SITE_URL_SET = "https://api.routerhub.example", True

    overview = _page(tenants, "/dashboard/")
    keys = _page(tenants, "/dashboard/keys/", {"name": "first", "scope": "inference"})

    assert "https://api.routerhub.example/v1" in overview
    assert "curl https://api.routerhub.example/v1/chat/completions" in keys
    assert HOST not in overview + keys


def test_a_management_key_is_shown_a_management_example_that_it_can_run(
    tenants: Any, live_server: Any
) -> None:
    page = _page(tenants, "/dashboard/keys/", {"name": "ops", "scope": "manage"})
    key = re.search(r'<code id="new-key">([^<]+)</code>', page)
    assert key

    assert "/v1/chat/completions" not in page
    example = re.search(r"curl (\S+/api/v1/credits) -H \"Authorization: Bearer (\S+)\"", page)
    assert example and example.group(2) == key.group(1), page
    path = example.group(1).split(HOST, 1)[1]
    answer = httpx.get(live_server.url + path, headers={"Authorization": f"Bearer {key.group(1)}"})
    assert answer.status_code == 200, answer.text
    assert "balance" in answer.json()
