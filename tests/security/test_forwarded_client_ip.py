"""The client address the per-IP limits count is the peer's, not one a client writes into
``X-Forwarded-For``: through the production server (gunicorn + uvicorn workers,
``deploy/gunicorn.conf.py``), forwarded headers are believed only from a proxy on the same host
unless ``FORWARDED_ALLOW_IPS`` names the proxies.

On the old code gunicorn.conf.py trusted every peer (``*``), and uvicorn then takes the leftmost
``X-Forwarded-For`` entry as the client: a client reaching the server directly (``make serve``,
docker-compose's published port) sent a new address with each attempt and was never throttled by
the 10-failed-logins-per-minute IP limit.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

import httpx
import pytest

from tests.reliability.live_gateway import LiveGateway

THROTTLED = "Too many failed login attempts"


def no_catalog(fake_url: str) -> None:
    """Logins never reach the gateway's catalog."""


def _loopback() -> str:
    """A peer address of this test alone (any 127/8 address is the loopback): the limits live
    in the shared Redis for a minute."""
    return f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


def _public_ip() -> str:
    return f"203.0.{secrets.randbelow(113)}.{secrets.randbelow(250) + 1}"


def _failed_login(client: httpx.Client, forwarded_for: str) -> str:
    page = client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token is not None, page.text[:300]
    email = f"nobody-{secrets.token_hex(6)}@example.com"  # a new email each time: no email lock
    response = client.post(
        "/accounts/login/",
        data={"csrfmiddlewaretoken": token[1], "login": email, "password": "wrong-password"},
        headers={"X-Forwarded-For": forwarded_for, "Referer": f"{client.base_url}accounts/login/"},
    )
    assert response.status_code == 200, response.status_code
    return response.text


@pytest.mark.django_db(transaction=True)
def test_a_direct_client_rotating_x_forwarded_for_is_throttled_by_its_own_address(
    start_live_gateway: Callable[..., LiveGateway],
) -> None:
    server = start_live_gateway(
        no_catalog, SESSION_COOKIE_SECURE="false", CSRF_COOKIE_SECURE="false"
    )
    transport = httpx.HTTPTransport(local_address=_loopback())
    with httpx.Client(base_url=server.url, transport=transport, timeout=30) as client:
        failures = [_failed_login(client, _public_ip()) for _ in range(10)]
        eleventh = _failed_login(client, _public_ip())

    assert not any(THROTTLED in page for page in failures)
    assert THROTTLED in eleventh, "a new X-Forwarded-For escaped the per-IP login limit"

    # A reverse proxy on the same host (127.0.0.1) is still believed: its client's address counts.
    with httpx.Client(base_url=server.url, timeout=30) as proxy:
        assert THROTTLED not in _failed_login(proxy, _public_ip())
