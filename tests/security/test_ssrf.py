"""SSRF: a provider key's own ``base_url`` may only point at public addresses, when it is saved
and again whenever the gateway connects to it (DNS rebinding), unless the operator allows
private hosts (``ALLOW_PRIVATE_PROVIDER_URLS``)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpx
import pytest

from accounts.models import KeyScope
from routing.egress import address_is_public, tenant_http_client_reset
from routing.models import Provider, ProviderKey
from routing.services import catalog_sync_file, provider_key_create
from tests.factories import key_client, key_make, organization_make
from tests.routing.servers import closed_port_url
from tests.routing.world import World, base_catalog

URL = "/api/v1/provider-keys"

REFUSED = {
    "loopback": "http://127.0.0.1:8001/v1",
    "dns-name-to-loopback": "http://localhost:8001/v1",
    "decimal-ip": "http://2130706433/v1",
    "hex-ip": "http://0x7f000001/v1",
    "octal-ip": "http://0177.0.0.1/v1",
    "short-ip": "http://127.1/v1",
    "cloud-metadata": "http://169.254.169.254/latest/meta-data",
    "private-10": "http://10.1.2.3/v1",
    "private-172": "https://172.16.0.1/v1",
    "private-192": "http://192.168.0.10/v1",
    "shared-cgnat": "http://100.64.0.1/v1",
    "unspecified": "http://0.0.0.0:8001/v1",
    "multicast": "http://224.0.0.1/v1",
    "reserved": "http://240.0.0.1/v1",
    "broadcast": "http://255.255.255.255/v1",
    "ipv6-loopback": "http://[::1]:8001/v1",
    "ipv6-unique-local": "http://[fd12:3456::1]/v1",
    "ipv6-link-local": "http://[fe80::1]/v1",
    "ipv6-site-local": "http://[fec0::1]/v1",
    "ipv6-documentation-3fff": "http://[3fff::1]/v1",
    "ietf-protocol-192.0.0": "http://192.0.0.255/v1",
    "ipv4-mapped-ietf-protocol": "http://[::ffff:192.0.0.100]/v1",
    "ipv6-multicast": "http://[ff02::1]/v1",
    "ipv4-mapped-loopback": "http://[::ffff:127.0.0.1]/v1",
    "ipv4-mapped-metadata": "http://[::ffff:a9fe:a9fe]/v1",
    "6to4-loopback": "http://[2002:7f00:1::]/v1",
    "nat64-metadata": "http://[64:ff9b::a9fe:a9fe]/v1",
}
MALFORMED = {
    "not-http": "ftp://8.8.8.8/v1",
    "no-host": "https:///v1",
    "credentials": "https://user:pw@8.8.8.8/v1",
    "bad-port": "https://8.8.8.8:99999/v1",
    "not-a-url": "openai please",
}


@pytest.fixture(autouse=True)
def _no_connections_checked_under_other_settings() -> None:
    tenant_http_client_reset()


@pytest.fixture
def manager(tenants) -> Any:  # type: ignore[no-untyped-def]
    catalog_sync_file()
    return key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))


def add_key(client: Any, base_url: str, provider: str = "openai") -> Any:
    return client.post(
        URL, {"provider": provider, "secret": "sk-own-secret-1234", "base_url": base_url}, "json"
    )


@pytest.mark.parametrize("url", list(REFUSED.values()), ids=list(REFUSED))
def test_base_url_reaching_a_non_public_address_is_refused_naming_the_field(
    manager: Any, settings: Any, url: str
) -> None:
    settings.ALLOW_PRIVATE_PROVIDER_URLS = False

    response = add_key(manager, url)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == "base_url"
    assert "not a public address" in response.json()["error"]["message"]
    assert not ProviderKey.objects.exists()


# Python 3.11's is_global counts every one of these global: egress.py's explicit deny list.
MISCLASSIFIED = ["fec0::1", "feff::1", "3fff::1", "3fff:fff:ffff::1", "192.0.0.8", "192.0.0.255"]
MISCLASSIFIED += ["::ffff:192.0.0.8", "::ffff:192.0.0.255"]
ANYCAST = ["192.0.0.9", "192.0.0.10", "::ffff:192.0.0.9", "::ffff:192.0.0.10", "3fff:1000::1"]


@pytest.mark.parametrize("address", MISCLASSIFIED)
def test_ranges_python_counts_global_are_not_public(address: str) -> None:
    assert not address_is_public(ipaddress.ip_address(address))  # True on the old code


@pytest.mark.parametrize("address", ANYCAST)
def test_global_addresses_next_to_the_deny_list_stay_public(address: str) -> None:
    assert address_is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_base_url_is_refused_naming_the_field(manager: Any, url: str) -> None:
    response = add_key(manager, url)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == "base_url"


@pytest.mark.parametrize("url", ["https://8.8.8.8/v1", "https://[2001:4860:4860::8888]/v1/"])
def test_public_base_url_is_stored_and_shown(manager: Any, settings: Any, url: str) -> None:
    settings.ALLOW_PRIVATE_PROVIDER_URLS = False

    response = add_key(manager, url)

    assert response.status_code == 201, response.content
    assert response.json()["base_url"] == url.rstrip("/")
    assert "sk-own" not in response.content.decode()


def test_base_url_is_only_for_openai_compatible_providers(manager: Any) -> None:
    response = add_key(manager, "https://8.8.8.8/v1", provider="anthropic")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "base_url"


def test_operator_setting_allows_private_hosts(manager: Any, settings: Any) -> None:
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True

    response = add_key(manager, "http://10.0.0.5:8000/v1")

    assert response.status_code == 201, response.content
    assert ProviderKey.objects.get().base_url == "http://10.0.0.5:8000/v1"


# --- at request time, through the gateway ------------------------------------------------------


def own_host_world(world: World, base_url: str) -> ProviderKey:
    """test/gpt's provider points at a closed port: only the organization's own host answers."""
    catalog = base_catalog(world.fake_url)
    catalog["providers"][0]["base_url"] = closed_port_url()
    world.catalog(catalog)
    provider = Provider.objects.get(slug="fake-openai")
    return provider_key_create(
        organization=world.organization,
        provider=provider,
        secret="sk-own-secret-9999",
        base_url=base_url,
    )


def chat(world: World) -> httpx.Response:
    return httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": "test/gpt", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def test_own_base_url_serves_the_organizations_requests(world: World, settings: Any) -> None:
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the fake upstream listens on 127.0.0.1
    own_host_world(world, f"{world.fake_url}/v1")

    response = chat(world)

    assert response.status_code == 200, response.text
    sent = world.last_upstream("/v1/chat/completions")
    assert sent["headers"]["authorization"] == "***9999"  # the organization's own key


def test_gateway_refuses_a_private_base_url_at_request_time(world: World, settings: Any) -> None:
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    own_host_world(world, f"{world.fake_url}/v1")  # saved while the operator allowed it
    settings.ALLOW_PRIVATE_PROVIDER_URLS = False

    response = chat(world)

    assert response.status_code == 502, response.text
    attempt = response.json()["error"]["metadata"]["attempts"][0]
    assert attempt["error"] == "connection_error"
    assert "not a public address" in attempt["detail"]
    assert world.upstream_requests() == []


def test_dns_rebinding_to_a_private_address_is_refused_at_connection_time(
    world: World, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # There is no DNS server here to rebind, so the resolver is the one thing replaced: the
    # name answers a public address when the key is saved, then the fake upstream's.
    settings.ALLOW_PRIVATE_PROVIDER_URLS = False
    answer = {"rebind.example": "93.184.215.14"}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        return real_getaddrinfo(answer.get(name, host), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    port = world.fake_url.rsplit(":", 1)[1]
    key = own_host_world(world, f"http://rebind.example:{port}/v1")
    answer["rebind.example"] = "127.0.0.1"

    response = chat(world)

    assert key.base_url == f"http://rebind.example:{port}/v1"
    assert response.status_code == 502, response.text
    assert "127.0.0.1" in response.json()["error"]["metadata"]["attempts"][0]["detail"]
    assert world.upstream_requests() == []


def organization_make_with_credits() -> Any:
    from decimal import Decimal

    from billing.services import ledger_post

    organization = organization_make()
    ledger_post(organization=organization, kind="promotion", amount=Decimal("5"),
                idempotency_key=f"grant-{organization.pk}")  # fmt: skip
    return organization


def test_an_organizations_failing_own_host_does_not_pause_the_endpoint_for_others(
    world: World, settings: Any
) -> None:
    # The circuit breaker is shared by every organization: failures of a tenant's own host (or
    # own key) must not open it for the platform's endpoint, or one tenant can pause a model
    # for everyone.
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True
    provider_key_create(organization=world.organization, secret="sk-own-secret-9999",
                        provider=Provider.objects.get(slug="fake-openai"),
                        base_url=f"{closed_port_url()}/v1")  # fmt: skip
    failures = [chat(world).status_code for _ in range(settings.GATEWAY_BREAKER_FAILURES + 1)]
    other = World(**{**world.__dict__, "key": key_make(organization_make_with_credits())})

    response = chat(other)

    assert set(failures) == {502}
    assert response.status_code == 200, response.text


def test_dashboard_refuses_a_private_base_url_next_to_the_field(tenants, settings: Any) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import dashboard_client

    settings.ALLOW_PRIVATE_PROVIDER_URLS = False
    catalog_sync_file()
    client = dashboard_client(tenants.admin, tenants.organization)
    form = {"provider": "openai", "secret": "sk-own-secret-1234"}

    refused = client.post(
        "/dashboard/provider-keys/", form | {"base_url": "http://169.254.169.254/"}
    )
    saved = client.post("/dashboard/provider-keys/", form | {"base_url": "https://8.8.8.8/v1"})

    assert refused.status_code == 200 and "not a public address" in refused.content.decode()
    assert saved.status_code == 302
    assert "https://8.8.8.8/v1" in client.get("/dashboard/provider-keys/").content.decode()
