"""``/metrics``: behind ``METRICS_TOKEN`` when set (a bearer token, compared in constant time),
hidden (404) without one unless ``METRICS_PUBLIC`` (production's default is hidden), and never
carrying an organization's data. Before, it answered anyone, in production too."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "metrics-token-0123456789abcdef"
# Label names /metrics may carry (the router-load path, Python's gc generation and version):
# nothing that names an organization, key, user or host.
ALLOWED_LABELS = {
    "path",
    "generation",
    "version",
    "implementation",
    "major",
    "minor",
    "patchlevel",
    "le",
}

pytestmark = pytest.mark.django_db


@override_settings(METRICS_TOKEN=TOKEN, METRICS_PUBLIC=True)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer " + "x" * 5000],
    ids=["none", "wrong", "basic", "longer", "huge"],
)
def test_with_a_token_set_a_scrape_without_it_is_refused(authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = Client().get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["type"] == "unauthorized"
    assert b"python_info" not in response.content


@override_settings(METRICS_TOKEN=TOKEN, METRICS_PUBLIC=False)
def test_with_a_token_set_a_scrape_sending_it_is_answered() -> None:
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert b"python_info" in response.content


@override_settings(METRICS_TOKEN="", METRICS_PUBLIC=False)
def test_without_a_token_metrics_are_hidden_unless_public() -> None:
    response = Client().get("/metrics")

    assert response.status_code == 404
    assert b"python_info" not in response.content


@override_settings(METRICS_TOKEN="", METRICS_PUBLIC=True)
def test_public_metrics_carry_no_organization_data() -> None:
    response = Client().get("/metrics")

    assert response.status_code == 200
    labels = {
        name
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        for name in sample.labels
    }
    assert labels <= ALLOWED_LABELS, labels - ALLOWED_LABELS


def test_metrics_are_hidden_by_default_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from routerhub.settings_parts import environment, security

    monkeypatch.setattr(environment, "PRODUCTION", True)
    monkeypatch.delenv("METRICS_PUBLIC", raising=False)
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    try:
        # security.py reads PRODUCTION from environment at import (``from ... import``).
        assert importlib.reload(security).METRICS_PUBLIC is False
        monkeypatch.setenv("METRICS_PUBLIC", "1")
        assert importlib.reload(security).METRICS_PUBLIC is True
    finally:
        monkeypatch.undo()
        importlib.reload(security)
