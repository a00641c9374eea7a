"""Security headers: every Django response says nosniff, a Referrer-Policy and no framing; HTML
pages carry the Content-Security-Policy (JSON answers none); production sends HSTS over HTTPS
only, as configured, and refuses a malformed header setting at boot. That the dashboard works
under the policy is tests/browser's to show: any violation fails a browser test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts.models import KeyScope
from routerhub.security_headers import policy_with
from tests.factories import key_client, key_make, session_client
from tests.processes import production_environment

pytestmark = pytest.mark.django_db


def test_dashboard_pages_carry_the_policy_and_every_response_the_other_headers(
    tenants: Any,
) -> None:
    page = session_client(tenants.owner, tenants.organization).get("/dashboard/")
    signed_out = Client().get("/accounts/login/")
    api = key_client(key_make(tenants.organization, scope=KeyScope.MANAGE)).get("/api/v1/keys")

    for response in (page, signed_out):
        assert response.status_code == 200
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
    assert api.status_code == 200 and api["Content-Type"] == "application/json"
    assert "Content-Security-Policy" not in api
    for response in (page, signed_out, api):
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["X-Frame-Options"] == "DENY"
        assert "Strict-Transport-Security" not in response  # plain HTTP, and not production


def test_the_policy_is_configurable_and_off_when_empty(tenants: Any, settings: Any) -> None:
    client = session_client(tenants.owner, tenants.organization)
    settings.CONTENT_SECURITY_POLICY = "default-src 'self'"
    assert client.get("/dashboard/")["Content-Security-Policy"] == "default-src 'self'"

    settings.CONTENT_SECURITY_POLICY = ""
    assert "Content-Security-Policy" not in client.get("/dashboard/")


def test_third_party_pages_with_inline_code_are_left_without_a_policy() -> None:
    docs = Client().get("/api/docs/")  # drf-spectacular's Swagger UI: an inline script

    assert docs.status_code == 200 and docs["Content-Type"].startswith("text/html")
    assert "Content-Security-Policy" not in docs


def test_a_page_adds_sources_to_the_directives_it_needs() -> None:
    policy = "default-src 'self'; script-src 'self'; object-src 'none';"  # a trailing ";" too

    widened = policy_with(
        policy,
        {
            "script-src": ["https://js.example", "'self'", "https://js.example"],
            "frame-src": ["https://f.example"],
            "object-src": ["https://o.example"],
        },
    )

    assert widened == (
        "default-src 'self'; script-src 'self' https://js.example; object-src https://o.example; "
        "frame-src 'self' https://f.example"
    )


def _production_headers(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """Boot the production settings in a fresh process and fetch the 404 page over HTTPS and
    over HTTP (as the proxy's X-Forwarded-Proto says)."""
    script = """
import json, django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="routerhub.example")
names = ("Strict-Transport-Security", "Content-Security-Policy", "X-Content-Type-Options",
         "Referrer-Policy", "X-Frame-Options")
seen = {}
for proto in ("https", "http"):
    response = client.get("/no-such-page/", HTTP_X_FORWARDED_PROTO=proto)
    seen[proto] = {name: response.headers.get(name) for name in names}
print(json.dumps(seen))
"""
    env = production_environment(tmp_path, BILLING_ENABLED="false", **extra)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_sends_hsts_over_https_only(tmp_path: Path) -> None:
    booted = _production_headers(tmp_path)

    assert booted.returncode == 0, booted.stderr[-2000:]
    seen = json.loads(booted.stdout.strip().splitlines()[-1])
    assert seen["https"]["Strict-Transport-Security"] == "max-age=31536000"
    assert seen["http"]["Strict-Transport-Security"] is None
    for headers in seen.values():
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["X-Frame-Options"] == "DENY"


def test_production_hsts_and_referrer_policy_are_configurable(tmp_path: Path) -> None:
    booted = _production_headers(
        tmp_path,
        SECURE_HSTS_SECONDS="600",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="true",
        SECURE_HSTS_PRELOAD="true",
        SECURE_REFERRER_POLICY="strict-origin-when-cross-origin",
    )

    assert booted.returncode == 0, booted.stderr[-2000:]
    https = json.loads(booted.stdout.strip().splitlines()[-1])["https"]
    assert https["Strict-Transport-Security"] == "max-age=600; includeSubDomains; preload"
    assert https["Referrer-Policy"] == "strict-origin-when-cross-origin"


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("CONTENT_SECURITY_POLICY", "default-src 'self'\r\nSet-Cookie: a=b", "printable ASCII"),
        ("SECURE_REFERRER_POLICY", "everywhere", "SECURE_REFERRER_POLICY must be one of"),
        ("SECURE_HSTS_SECONDS", "-1", "must not be negative"),
        ("SECURE_HSTS_PRELOAD", "maybe", "must be true or false"),
    ],
)
def test_a_malformed_header_setting_stops_the_boot(
    tmp_path: Path, name: str, value: str, said: str
) -> None:
    booted = _production_headers(tmp_path, **{name: value})

    assert booted.returncode != 0
    assert said in booted.stderr
