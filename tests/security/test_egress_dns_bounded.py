"""The blocking tenant-host client (webhook deliveries) bounds its name lookup too: the C
library's ``getaddrinfo`` takes no timeout, so a receiver's slow DNS held a worker for as long
as the lookup took, before any connect, read or write timeout began. With private URLs allowed
the lookup is bounded the same way, and the connection goes to the answer's first address only
(trying each address with the full timeout let a long answer stretch the bound)."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from routing.egress import public_http_client_sync
from tests.security.raw_upstream import RawUpstream, reads_and_hangs
from tests.security.stalling_resolver import STALLED, StallingResolver


@pytest.mark.parametrize("allow_private", [False, True])
def test_a_stalled_name_lookup_ends_as_a_connect_timeout(
    resolver: StallingResolver, allow_private: bool
) -> None:
    client = public_http_client_sync(allow_private=allow_private, timeout=0.5, total=1.5)

    # Before: the client waited for the lookup (here 15 s, then a refusal or a connection
    # error); a resolver that never answered held the worker for good.
    with client, pytest.raises(httpx.ConnectTimeout, match=f"resolving {STALLED}"):
        client.post(f"http://{STALLED}:9/hooks", content=b"{}")
    assert not resolver.finished.is_set()


def test_with_private_urls_allowed_only_the_first_address_is_connected_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = RawUpstream(reads_and_hangs)
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "two.example":
            return real(host, port, *args, **kwargs)
        # First an address nothing listens on, then the receiver's.
        return [
            *real("127.0.0.2", port, *args, **kwargs),
            *real("127.0.0.1", port, *args, **kwargs),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    client = public_http_client_sync(allow_private=True, timeout=0.5, total=1.5)
    try:
        # Before: every address was tried in turn, each with the full connect timeout.
        with client, pytest.raises(httpx.ConnectError):
            client.post(f"http://two.example:{receiver.port}/hooks", content=b"{}")
    finally:
        receiver.stop()
    assert receiver.bodies == []


def test_an_organizations_second_delivery_lookup_fails_at_once_while_its_first_is_stalled(
    resolver: StallingResolver,
) -> None:
    """Deliveries run in the same kind of pool (in each Celery child): one organization's
    stalled receivers hold one thread of it, not all. Before: the second lookup took another
    thread and waited out its timeout."""

    def deliver(tenant: int, host: str) -> None:
        client = public_http_client_sync(allow_private=False, timeout=0.5, total=1.5, tenant=tenant)
        with client:
            client.post(f"http://{host}:9/hooks", content=b"{}")

    with pytest.raises(httpx.ConnectTimeout):
        deliver(1, f"a.{STALLED}")
    with pytest.raises(httpx.ConnectError, match=f"earlier lookup of a.{STALLED}") as refused:
        deliver(1, f"b.{STALLED}")
    assert not isinstance(refused.value, httpx.ConnectTimeout)  # refused, not waited for
    assert resolver.entered == 1
    with pytest.raises(httpx.ConnectTimeout):  # another organization's receiver is tried
        deliver(2, f"c.{STALLED}")
    assert resolver.entered == 2 and not resolver.finished.is_set()
