"""Calls to hosts a tenant chose (a provider key's ``base_url``) may only reach public addresses.

A base URL is checked when it is saved (``base_url_check``: a 400 naming the field) and again on
every connection the gateway opens to it: ``tenant_http_client`` resolves the host itself,
refuses the connection unless every address is public, and connects to the address it checked,
so a DNS answer that changes between the two (rebinding) cannot reach an internal service.
``settings.ALLOW_PRIVATE_PROVIDER_URLS`` lifts the rule for operators whose tenants legitimately
run models on private networks (and for tests, whose fake upstream listens on 127.0.0.1).
Webhook deliveries (a tenant's receiver URL) use the same checks through
``public_http_client_sync``, under their own setting (``WEBHOOK_ALLOW_PRIVATE_URLS``).
Every name lookup runs in one of ``routing.resolvers``' bounded pools, abandoned at its deadline
(``URL_CHECK_DNS_TIMEOUT_SECONDS`` at most), never in the event loop's default executor (which
one tenant's stalled names could fill): the save-time check and deliveries in the 4-thread one
(one unfinished per organization), the gateway's connections to a tenant's own hosts in their
own (``lookup_async``: ``GATEWAY_DNS_THREADS``, ``GATEWAY_DNS_PER_ORGANIZATION``). Platform
providers' hosts are not looked up here at all."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import ssl
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings

from routerhub.domain import InvalidInput, RateLimited, Unavailable
from routing.gateway.upstream import Client
from routing.resolvers import BUSY_RETRY_AFTER, NameStalled, ResolverBusy, lookup, lookup_async
from routing.tenant_slots import CONNECTING_ORGANIZATION, FairTransport

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), which is what it reaches."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


# Ranges Python 3.11's is_global counts global though they are not publicly reachable: IPv6
# site-local (deprecated, yet still routed inside some networks), RFC 9637's IPv6 documentation
# range, and IPv4's IETF protocol assignments but for their two global anycast addresses.
# (IPv4-mapped forms of these reach the check as their IPv4 address: _embedded_ipv4.)
_NOT_PUBLIC = (
    ipaddress.IPv6Network("fec0::/10"),
    ipaddress.IPv6Network("3fff::/20"),
    ipaddress.IPv4Network("192.0.0.0/24"),
)
_PUBLIC_IN_NOT_PUBLIC = frozenset(map(ipaddress.IPv4Address, ("192.0.0.9", "192.0.0.10")))


def address_is_public(address: IPAddress) -> bool:
    """False for private, loopback, link-local (cloud metadata), unique-local, site-local,
    documentation, shared (CGNAT), multicast, reserved and unspecified addresses, IPv4 and IPv6
    alike."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return address_is_public(inner)
    if address not in _PUBLIC_IN_NOT_PUBLIC and any(address in net for net in _NOT_PUBLIC):
        return False
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_link_local
    )


def _refusal(host: str, addresses: Iterable[IPAddress]) -> str | None:
    blocked = sorted({str(a) for a in addresses if not address_is_public(a)})
    if not blocked:
        return None
    return (
        f"{host} resolves to {', '.join(blocked)}, which is not a public address "
        "(private, loopback, link-local, unique-local, site-local, multicast or reserved)"
    )


def _addresses(infos: Iterable[tuple[Any, ...]]) -> list[IPAddress]:
    # getaddrinfo is also what turns 2130706433, 0x7f.1 or 0177.0.0.1 into 127.0.0.1, exactly as
    # the connection would: checking its answer leaves no numeric spelling unchecked.
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _url_parts(url: str, param: str) -> tuple[str, int, str]:
    """The host, port and scheme of a URL a tenant's host may be called at, else 400."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput(f"{param} is not a valid URL.", param=param) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{param} must be an http:// or https:// URL with a host.", param=param)
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidInput(
            f"{param} must not contain credentials, a query or a fragment.", param=param
        )
    return parts.hostname, port or (443 if parts.scheme == "https" else 80), parts.scheme


def _save_time_lookup(host: str, port: int, param: str, tenant: object) -> list[tuple[Any, ...]]:
    """``lookup`` inside the web request that saves the URL, its refusals in the caller's words:
    a name that does not answer in time is a 400 naming it; a lookup that could not start (this
    organization's earlier one unfinished, or every thread busy) a 429/503 to retry, never a
    400 blaming a name that was not even tried."""
    timeout = settings.URL_CHECK_DNS_TIMEOUT_SECONDS
    retry = {"Retry-After": str(BUSY_RETRY_AFTER)}
    try:
        return lookup(host, port, timeout, tenant)
    except NameStalled:  # before TimeoutError, its base class
        raise InvalidInput(
            f"{param}: could not resolve {host} within {timeout:g} s a moment ago; check the "
            f"name or try again in a minute.",
            param=param,
        ) from None
    except TimeoutError:  # before OSError, its base class
        raise InvalidInput(
            f"{param}: could not resolve {host} within {timeout:g} s; check the name or try again.",
            param=param,
        ) from None
    except (OSError, UnicodeError):
        raise InvalidInput(f"{param}'s host {host} does not resolve.", param=param) from None
    except ResolverBusy as busy:
        if busy.tenant_host is None:
            raise Unavailable(
                f"Name resolver busy: {host} could not be looked up now; try again in "
                f"{BUSY_RETRY_AFTER} s.",
                param=param,
                headers=retry,
            ) from None
        raise RateLimited(
            f"{param}: this organization's earlier URL check (resolving {busy.tenant_host}) "
            f"has not finished; try again in {BUSY_RETRY_AFTER} s, or check that name.",
            param=param,
            headers=retry,
        ) from None


def base_url_check(
    url: str, *, param: str = "base_url", allow_private: bool | None = None, tenant: object = None
) -> str:
    """The URL, normalized, if the gateway may call it; else a ``InvalidInput`` naming ``param``
    (``RateLimited``/``Unavailable`` when its host could not be looked up now). ``allow_private``
    defaults to ``settings.ALLOW_PRIVATE_PROVIDER_URLS``; ``tenant`` (the organization's id)
    allows it one unfinished lookup at a time."""
    url = url.strip()
    host, port, _ = _url_parts(url, param)
    if settings.ALLOW_PRIVATE_PROVIDER_URLS if allow_private is None else allow_private:
        return url.rstrip("/")
    # In the web request that saves the URL: bounded, so a slow or blackholed name answers 400
    # instead of holding the request's thread for the resolver's full timeout.
    refusal = _refusal(host, _addresses(_save_time_lookup(host, port, param, tenant)))
    if refusal is not None:
        raise InvalidInput(f"{param} is not allowed: {refusal}.", param=param)
    return url.rstrip("/")


def _public_address(host: str, infos: Iterable[tuple[Any, ...]]) -> str:
    """The address to connect to for ``host`` (its resolver's answer), refused unless every
    address of the answer is public."""
    addresses = _addresses(infos)
    refusal = _refusal(host, addresses)
    if refusal is not None:
        raise httpcore.ConnectError(f"refused: {refusal}")
    return str(addresses[0])


class _PublicAddressesOnly(httpcore.AsyncNetworkBackend):
    """Resolve, refuse non-public answers, then connect to the very address that was checked."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if settings.ALLOW_PRIVATE_PROVIDER_URLS:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        # The C library's resolver (as at save time), not the event loop's own (uvloop), in the
        # gateway's bounded pool (not the save-time one): connections to one name share its
        # lookup; an organization holds at most GATEWAY_DNS_PER_ORGANIZATION threads. A lookup
        # that cannot start fails this attempt only (the next candidate is tried).
        bound = settings.URL_CHECK_DNS_TIMEOUT_SECONDS
        bound = bound if timeout is None else min(timeout, bound)
        with _lookup_errors(host, bound):
            infos = await lookup_async(
                host,
                port,
                bound,
                CONNECTING_ORGANIZATION.get(),
                threads=settings.GATEWAY_DNS_THREADS,
                per_tenant=settings.GATEWAY_DNS_PER_ORGANIZATION,
            )
        # TLS still verifies the certificate against ``host`` (httpcore passes the URL's host as
        # the server name), so connecting to the address changes nothing but what was checked.
        address = _public_address(host, infos)
        return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _time_left(
    deadline: float, total: float, timeout: float | None, error: type[Exception]
) -> float:
    """``timeout`` cut to what is left before ``deadline``; ``error`` once nothing is."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise error(f"the exchange took longer than its {total:g} s bound")
    return left if timeout is None else min(timeout, left)


class _Deadline(httpcore.NetworkStream):
    """A blocking stream whose every operation ends by ``deadline`` (``time.monotonic()``): a
    host answering a byte at a time, each inside the per-read timeout, still cannot hold it."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float, total: float) -> None:
        self._inner, self._deadline, self._total = inner, deadline, total

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        return _time_left(self._deadline, self._total, timeout, error)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return self._inner.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))
        except httpcore.ReadTimeout:
            self._left(0, httpcore.ReadTimeout)  # says so when it was the bound that ran out
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self._inner.write(buffer, self._left(timeout, httpcore.WriteTimeout))
        except httpcore.WriteTimeout:
            self._left(0, httpcore.WriteTimeout)
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = self._left(timeout, httpcore.ConnectTimeout)
        inner = self._inner.start_tls(ssl_context, server_hostname, left)
        return _Deadline(inner, self._deadline, self._total)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


@contextlib.contextmanager
def _lookup_errors(host: str, timeout: float) -> Iterator[None]:
    """A failed ``lookup`` as httpcore's errors: ``ConnectTimeout`` once ``timeout`` seconds
    passed (or the name stalled moments ago), ``ConnectError`` when the name does not resolve or
    no lookup may start (the gateway's attempt fails: 502/504 when no candidate is left)."""
    try:
        yield
    except NameStalled:
        raise httpcore.ConnectTimeout(f"resolving {host} timed out moments ago") from None
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout:g} s") from None
    except (OSError, UnicodeError, ResolverBusy) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc


def _resolve_within(host: str, port: int, timeout: float, tenant: object) -> list[tuple[Any, ...]]:
    """``lookup(host, port)``, or ``httpcore.ConnectTimeout`` once ``timeout`` seconds pass
    (``httpcore.ConnectError`` when the name does not resolve or no lookup may start)."""
    with _lookup_errors(host, timeout):
        infos = lookup(host, port, timeout, tenant)
    if not infos:
        raise httpcore.ConnectError(f"cannot resolve {host}: no address")
    return infos


class _BoundedSync(httpcore.NetworkBackend):
    """The blocking backend of ``public_http_client_sync``: the name lookup, the connection (to
    one address of the answer) and everything sent and read on it end within ``total`` seconds
    of the client's creation, and unless ``allow_private`` it connects only to public addresses,
    checked as ``_PublicAddressesOnly`` checks them (Celery tasks such as webhook deliveries)."""

    def __init__(self, *, allow_private: bool, total: float, tenant: object) -> None:
        self._inner = httpcore.SyncBackend()
        self._allow_private, self._total, self._tenant = allow_private, total, tenant
        self._deadline = time.monotonic() + total

    def _left(self, timeout: float | None) -> float:
        return _time_left(self._deadline, self._total, timeout, httpcore.ConnectTimeout)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        infos = _resolve_within(host, port, self._left(timeout), self._tenant)
        # One address, as checked, within what is left: trying every address of the answer with
        # the full timeout each would let a host's DNS answer stretch the bound.
        address = str(infos[0][4][0]) if self._allow_private else _public_address(host, infos)
        left = self._left(timeout)
        stream = self._inner.connect_tcp(address, port, left, local_address, socket_options)
        return _Deadline(stream, self._deadline, self._total)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Built once: loading the CA bundle costs ~0.3 s, more than a whole webhook delivery.
    return httpx.create_ssl_context()


def public_http_client_sync(
    *, allow_private: bool, timeout: float, total: float, tenant: object = None
) -> httpx.Client:
    """A blocking client for one exchange with a tenant's host: each connect, write and read
    within ``timeout``, all of them within ``total`` seconds from now, and only to public
    addresses (unless ``allow_private``), checked at connection time like ``tenant_http_client``;
    ``tenant`` (the organization's id) has one unfinished name lookup at a time. The caller
    closes it."""
    transport = httpx.HTTPTransport(verify=_ssl_context())
    transport._pool = httpcore.ConnectionPool(
        ssl_context=_ssl_context(),
        network_backend=_BoundedSync(allow_private=allow_private, total=total, tenant=tenant),
    )
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False)


class _State:
    client: httpx.AsyncClient | None = None
    loop: asyncio.AbstractEventLoop | None = None


def tenant_http_client() -> httpx.AsyncClient:
    """The pooled client for tenant-chosen hosts (one per process and event loop); a request
    naming its organization (``tenant_slots.ORGANIZATION``) waits for one of its slots first."""
    loop = asyncio.get_running_loop()
    if _State.client is None or _State.loop is not loop:
        transport = httpx.AsyncHTTPTransport()
        # httpx takes no network backend, so its pool is rebuilt with the guarded one.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=settings.GATEWAY_MAX_CONNECTIONS,
            keepalive_expiry=30,
            network_backend=_PublicAddressesOnly(),
        )
        # No cookie jar: one client serves every organization's hosts, so a cookie one tenant's
        # host set would be sent with another tenant's requests to the same host. Nor may one
        # tenant's stalled hosts hold every connection: each organization gets at most
        # GATEWAY_TENANT_MAX_CONNECTIONS of them at once (``tenant_slots``).
        fair = FairTransport(
            transport,
            settings.GATEWAY_TENANT_MAX_CONNECTIONS,
            settings.GATEWAY_TENANT_SLOT_WAIT_SECONDS,
        )
        _State.client = Client(transport=fair, follow_redirects=False)
        _State.loop = loop
    return _State.client


def tenant_http_client_reset() -> None:
    """Forget the pooled client (its kept-alive connections were checked under old settings)."""
    _State.client = None


def tenant_organizations_holding() -> int:
    """How many organizations hold or await a slot of the own-host pool (``tenant_slots``)."""
    if _State.client is None:
        return 0
    transport = _State.client._transport
    return transport.slots.organizations() if isinstance(transport, FairTransport) else 0
