"""Fairness between organizations on the one pooled client for their own hosts.

Every organization's own-host calls (a provider key's ``base_url``) share one connection pool per
process (``egress.tenant_http_client``, ``GATEWAY_MAX_CONNECTIONS``). A host that accepts and then
stalls, drips or streams for minutes holds its connection all that time, so one organization
could take every connection of the pool and leave the others' requests waiting for a free one
until they time out. ``FairTransport`` stands in front of the pool: a request of an organization
takes one of that organization's ``GATEWAY_TENANT_MAX_CONNECTIONS`` slots before it may take a
connection, and gives it back when its answer is closed — read to the end, abandoned by the
client, failed or cancelled (``_Held``). A request that finds its organization's slots all taken
waits at most ``GATEWAY_TENANT_SLOT_WAIT_SECONDS`` (and never past its pool timeout: the wait is
taken off what it may then wait for a pooled connection), then fails ``TenantLimitReached`` (an
attempt failure: the next candidate is tried; when none is left the client gets a 429 naming the
limit, ``attempts``). A request refused so once is refused at once for its organization's other
own hosts (``REFUSED``): one request waits for a slot once, not once per candidate.

Memory is bounded: an organization has an entry only while it holds or awaits a slot; the last
one out removes it, so the table never holds more organizations than there are requests.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Callable

import httpx

# The request extension naming the organization whose own host a request goes to (the gateway's
# attempts set it, ``attempts.request_extensions``); a request without it takes no slot.
ORGANIZATION = "routerhub.organization"
# Set (to the refusal's message) once a request of the organization was refused a slot: its later
# candidates are refused at once with the same message instead of waiting again.
REFUSED = "routerhub.organization_refused"
LIMIT_SETTING = "GATEWAY_TENANT_MAX_CONNECTIONS"
# The organization whose request is opening a connection (set while ``FairTransport`` hands it to
# the pool): the network backend's name lookup counts against it (``egress``, ``resolvers``).
CONNECTING_ORGANIZATION: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "connecting_organization", default=None
)


class TenantLimitReached(httpx.PoolTimeout):
    """An organization's own-host requests are all at its per-process limit, and none finished
    within the slot wait: nothing was sent (a pool timeout of its own)."""


class _Organization:
    __slots__ = ("semaphore", "users")

    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self.users = 0  # holding a slot or waiting for one


class OrganizationSlots:
    """At most ``limit`` slots per organization, each taken by ``acquire`` and given back by
    exactly one ``release``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._organizations: dict[int, _Organization] = {}

    def organizations(self) -> int:
        """How many organizations hold or await a slot (the table's size)."""
        return len(self._organizations)

    async def acquire(self, organization: int, timeout: float, request: httpx.Request) -> None:
        entry = self._organizations.get(organization)
        if entry is None:
            entry = self._organizations[organization] = _Organization(self.limit)
        entry.users += 1
        try:
            if not entry.semaphore.locked():
                await entry.semaphore.acquire()  # a free slot: taken without suspending
                return
            async with asyncio.timeout(timeout):
                await entry.semaphore.acquire()
        except BaseException as exc:
            self._leave(organization, entry)
            if isinstance(exc, TimeoutError):
                raise TenantLimitReached(self._refusal(timeout), request=request) from None
            raise

    def release(self, organization: int) -> None:
        entry = self._organizations[organization]
        entry.semaphore.release()
        self._leave(organization, entry)

    def _leave(self, organization: int, entry: _Organization) -> None:
        entry.users -= 1
        if entry.users == 0:
            del self._organizations[organization]

    def _refusal(self, timeout: float) -> str:
        return (
            f"Your organization already has {self.limit} requests in flight to its own provider "
            f"hosts on this gateway process ({LIMIT_SETTING}) and none finished within "
            f"{timeout:g} s; send fewer at once (or ask the operator to raise {LIMIT_SETTING})."
        )


class _Held(httpx.AsyncByteStream):
    """An answer's body that gives its organization's slot back when it is closed."""

    def __init__(self, inner: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._inner, self._release = inner, release
        self._released = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._inner.__aiter__()  # the chunks as they come; ``aclose`` gives the slot back

    async def aclose(self) -> None:
        if not self._released:  # first, so that nothing below (a cancellation) can keep it
            self._released = True
            self._release()
        await self._inner.aclose()


class FairTransport(httpx.AsyncBaseTransport):
    """``inner`` (the pool), entered only with a slot of the request's organization, waited for
    at most ``slot_wait`` seconds."""

    def __init__(self, inner: httpx.AsyncBaseTransport, limit: int, slot_wait: float) -> None:
        self._inner = inner
        self.slots = OrganizationSlots(limit)
        self._slot_wait = slot_wait

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        organization = request.extensions.get(ORGANIZATION)
        if organization is None:
            return await self._inner.handle_async_request(request)
        refused = request.extensions.get(REFUSED)
        if refused is not None:  # this request already waited for a slot, and was refused one
            raise TenantLimitReached(refused, request=request)
        await self._slot(organization, request)
        connecting = CONNECTING_ORGANIZATION.set(organization)
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            self.slots.release(organization)
            raise
        finally:
            CONNECTING_ORGANIZATION.reset(connecting)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Held(response.stream, lambda: self.slots.release(organization))
        return response

    async def _slot(self, organization: int, request: httpx.Request) -> None:
        """Take a slot, and take the time it took off the request's pool timeout: a slot and a
        pooled connection together are waited for at most the pool timeout."""
        timeouts = dict(request.extensions.get("timeout") or {})
        pool = timeouts.get("pool")
        wait = self._slot_wait if pool is None else min(self._slot_wait, pool)
        started = time.monotonic()
        await self.slots.acquire(organization, wait, request)
        if pool is not None:
            timeouts["pool"] = max(0.0, pool - (time.monotonic() - started))
            request.extensions = {**request.extensions, "timeout": timeouts}

    async def aclose(self) -> None:
        await self._inner.aclose()
