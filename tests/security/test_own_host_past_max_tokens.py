"""An organization's own host answers what it likes: one that ignores ``max_tokens`` and counts a
token or two is billed no lower than its share (BILLING_OWN_HOST_FLOOR_SHARE) of what it sent,
not of ``max_tokens``. Before, the floor's estimate was capped at the output the request asked
for, so ``max_tokens: 1`` took any answer from the host for a token's fee. And an honest host
that sends no usage is billed no more than ``max_tokens`` when it stops there."""

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


# 100 tokens of English at ~4.5 characters a token: 450 characters, 113 tokens at 4 a token.
HONEST = ("Light from the sun scatters in the air, blue the most. " * 9)[:450]


def _uncounted(stream: bool) -> tuple[dict[str, str], bytes]:
    if not stream:
        whole = {k: v for k, v in COMPLETION.items() if k != "usage"}
        whole["choices"] = [{"index": 0, "message": {"role": "assistant", "content": HONEST},
                             "finish_reason": "length"}]  # fmt: skip
        return {"content-type": "application/json"}, orjson.dumps(whole)
    events = [stream_chunk({"role": "assistant", "content": HONEST}, None),
              stream_chunk({}, "length")]  # fmt: skip
    return {"content-type": "text/event-stream"}, b"".join(events) + b"data: [DONE]\n\n"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_honest_own_host_sending_no_usage_is_billed_at_most_max_tokens(
    world: World, own_host: OwnHost, stream: bool
) -> None:
    """Stopped at ``max_tokens`` (100) with no usage: billed 100, not its 113 at 4 a token."""
    own_host.answer = _uncounted(stream)
    body = {"model": "test/own", "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": "Why is the sky blue?"}]}  # fmt: skip

    served = httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body,
                        headers={"Authorization": f"Bearer {world.key}"}, timeout=30)  # fmt: skip

    assert served.status_code == 200, served.text
    generation_id = served.headers["x-generation-id"]
    record = poll(lambda: UsageRecord.objects.filter(generation_id=generation_id).first())
    assert tokens_from_chars(len(HONEST)) > 100  # the old code billed this: 113
    assert record.completion_tokens == 100
    assert UsageFlag.USAGE_ESTIMATED in record.flag_list
