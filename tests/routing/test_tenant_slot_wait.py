"""A request's wait for its organization's slot comes off its pool timeout (``tenant_slots``):
a slot and then a pooled connection are waited for at most the pool timeout together, not each
for the whole of it."""

from __future__ import annotations

import asyncio

import httpx

from routing.tenant_slots import ORGANIZATION, FairTransport

POOL_TIMEOUT = 5.0


def test_the_wait_for_a_slot_is_taken_off_the_pool_timeout() -> None:
    pool_timeouts: list[float] = []  # what the pool behind the slots was given, per request

    def pool(request: httpx.Request) -> httpx.Response:
        pool_timeouts.append(request.extensions["timeout"]["pool"])
        return httpx.Response(200, stream=httpx.ByteStream(b"answer"))  # read when iterated

    async def two_requests() -> None:
        fair = FairTransport(httpx.MockTransport(pool), limit=1, slot_wait=POOL_TIMEOUT)
        own = {ORGANIZATION: 7}
        async with httpx.AsyncClient(transport=fair, timeout=POOL_TIMEOUT) as client:
            held = await client.send(client.build_request("POST", "http://own/", extensions=own),
                                     stream=True)  # fmt: skip
            waiting = asyncio.create_task(client.post("http://own/", extensions=own))
            while fair.slots.organizations() == 0 or len(pool_timeouts) < 1:
                await asyncio.sleep(0)
            for _ in range(20):  # the second request is waiting for the slot the first holds
                await asyncio.sleep(0.01)
            assert len(pool_timeouts) == 1 and not waiting.done()
            assert await held.aread() == b"answer"  # read to its end: the slot goes back
            assert (await waiting).status_code == 200
        assert fair.slots.organizations() == 0

    asyncio.run(two_requests())

    # The first took a free slot; the second waited for it (while the first was held), and that
    # wait was taken off what it had left for the pool (the old code gave both the whole 5 s).
    assert 0 <= pool_timeouts[1] < pool_timeouts[0] <= POOL_TIMEOUT
