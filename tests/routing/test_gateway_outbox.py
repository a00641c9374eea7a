"""When the gateway hands a finished request's usage draft to the Redis outbox (issue 21)."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from billing import outbox
from tests.routing.servers import gateway_idle
from tests.routing.world import World


def test_a_lone_requests_draft_is_written_without_waiting_for_companions(
    world: World, settings, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Alone in the process (c=1), a draft's XADD starts right after the response instead of
    waiting ``OUTBOX_COALESCE_S`` for other requests' drafts that will not come: it then ran in
    the middle of the client's next request. Here the window is an hour: only a write that does
    not wait for it lets the request finish (its hand-over included) and its usage settle."""
    settings.REDIS_URL = world.redis_url  # through the Redis outbox, as in production
    monkeypatch.setattr(outbox, "OUTBOX_COALESCE_S", 3600.0)

    response = httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        json={"model": "test/gpt", "messages": [{"role": "user", "content": "Say hi."}]},
        headers={"Authorization": f"Bearer {world.key}"},
        timeout=60,
    )

    assert response.status_code == 200, response.text
    gateway_idle(timeout=20)  # the hand-over is done: the draft is in the stream
    record = world.usage_record(response.json()["id"])
    assert record.status == "succeeded"
    assert record.cost == Decimal(str(response.json()["usage"]["cost"]))
