"""An organization's own host answers what it likes: one that ignores ``max_tokens`` and counts a
token or two is billed no lower than its share (BILLING_OWN_HOST_FLOOR_SHARE) of what it sent,
not of ``max_tokens``. Before, the floor's estimate was capped at the output the request asked
for, so ``max_tokens: 1`` took any answer from the host for a token's fee."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from billing.models import UsageFlag, UsageRecord
from tests.routing.servers import poll
from tests.routing.world import World
from tests.security.own_host import COMPLETION, OwnHost, own_host_serving, stream_chunk
from training.tokens import tokens_from_chars

TEXT = "The sky is blue because air scatters short wavelengths of sunlight. " * 60
FEW = {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}


@pytest.fixture
def own_host(world: World, settings: Any) -> Iterator[OwnHost]:
    app = OwnHost()
    with own_host_serving(world, settings, app):
        yield app


def _answer(stream: bool) -> tuple[dict[str, str], bytes]:
    if not stream:
        whole = COMPLETION | {"usage": FEW}
        whole["choices"] = [{"index": 0, "message": {"role": "assistant", "content": TEXT},
                             "finish_reason": "stop"}]  # fmt: skip
        return {"content-type": "application/json"}, orjson.dumps(whole)
    events = [stream_chunk({"role": "assistant", "content": TEXT}, None),
              stream_chunk({}, "stop", FEW)]  # fmt: skip
    return {"content-type": "text/event-stream"}, b"".join(events) + b"data: [DONE]\n\n"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_own_host_ignoring_max_tokens_is_floored_on_what_it_sent(
    world: World, own_host: OwnHost, settings: Any, stream: bool
) -> None:
    own_host.answer = _answer(stream)
    body = {"model": "test/own", "max_tokens": 1, "stream": stream,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Why is the sky blue?"}]}  # fmt: skip

    served = httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body,
                        headers={"Authorization": f"Bearer {world.key}"}, timeout=30)  # fmt: skip

    assert served.status_code == 200, served.text
    assert TEXT.strip() in served.text  # the client got the whole answer
    generation_id = served.headers["x-generation-id"]
    record = poll(lambda: UsageRecord.objects.filter(generation_id=generation_id).first())
    share = settings.BILLING_OWN_HOST_FLOOR_SHARE
    # Old code: ceil(½ x min(estimate, max_tokens 1)) = 1 token for 4,080 characters.
    assert record.completion_tokens >= math.ceil(tokens_from_chars(len(TEXT)) * share) > 100
    assert UsageFlag.USAGE_FLOORED in record.flag_list
