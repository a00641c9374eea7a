"""``AsyncRouterHub`` against the in-process server: the same resources, awaited."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from routerhub_client import AsyncRouterHub, PermissionDeniedError

from accounts.models import KeyScope
from tests.clients.conftest import CHEAP, DEAR, PROSE_PROMPT, support_frame
from tests.routing.world import World


async def _journey(world: World, manage_key: str) -> dict[str, Any]:
    sent: list[tuple[int, int]] = []
    async with (
        AsyncRouterHub(base_url=world.gateway_url, api_key=manage_key, max_retries=0) as manage,
        AsyncRouterHub(base_url=world.gateway_url, api_key=world.key, max_retries=0) as inference,
    ):
        await manage.routers.create("support", candidates=[CHEAP, DEAR])
        dataset = await manage.datasets.upload(
            support_frame(), name="support", progress=lambda done, total: sent.append((done, total))
        )
        seen: list[Any] = []
        run = await manage.routers.train_and_wait(
            "support", dataset["id"], progress=seen.append, interval=0.05
        )
        selection = await inference.routers.select("support", prompt=PROSE_PROMPT, tradeoff=0)
        completion = await inference.openai.chat.completions.create(
            model="router/support",
            messages=[{"role": "user", "content": PROSE_PROMPT}],
            extra_body={"router": {"tradeoff": 0}},
        )
        keys = [key["id"] async for key in manage.keys.list(page_size=1)]
        versions = [v["number"] async for v in manage.routers.versions("support")]
        report = await manage.routers.report("support", 1)
        try:
            await inference.credits.get()
        except PermissionDeniedError as exc:
            denied = exc.status
        return {"sent": sent, "seen": seen, "run": run, "selection": selection,
                "completion": completion, "keys": keys, "versions": versions,
                "report": report, "denied": denied}  # fmt: skip


@pytest.mark.usefixtures("eager_celery", "media")
def test_async_client_trains_selects_and_serves(world: World) -> None:
    result = asyncio.run(_journey(world, world.key_for(scope=KeyScope.MANAGE)))

    assert result["sent"][-1][0] == result["sent"][-1][1] > 0
    assert result["run"]["status"] == "succeeded"
    assert result["seen"][-1]["status"] == "succeeded"
    assert result["selection"]["chosen"] == DEAR
    assert result["completion"].model == DEAR
    assert len(result["keys"]) == 2 and result["versions"] == [1]
    assert result["report"]["curve"]
    assert result["denied"] == 403
