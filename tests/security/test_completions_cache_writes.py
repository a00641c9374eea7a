"""``/v1/completions`` with several prompts sums each prompt's cache writes, hour-long ones
included: billed at the write multipliers and shown, as a single prompt's are."""

from __future__ import annotations

import socket
from decimal import Decimal
from typing import Any

import httpx
import orjson

from tests.routing.world import World, base_catalog, endpoint, model, provider
from tests.security.raw_upstream import RawUpstream

WRITTEN = 1000


def answers_with_an_hour_write(server: RawUpstream, connection: socket.socket) -> None:
    """An Anthropic upstream whose every answer wrote ``WRITTEN`` prompt tokens for an hour."""
    usage = {
        "input_tokens": 10,
        "output_tokens": 2,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": WRITTEN,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": WRITTEN},
    }
    answer = orjson.dumps(
        {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
         "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "usage": usage}
    )  # fmt: skip
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    while server.read_request(connection):
        connection.sendall(head % len(answer) + answer)


def test_several_prompts_bill_and_show_every_cache_write(
    world: World, raw_servers: list[RawUpstream]
) -> None:
    server = RawUpstream(answers_with_an_hour_write)
    raw_servers.append(server)
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/c2"))
    data["providers"].append(provider("anth-raw", "anthropic", server.url()))
    data["endpoints"].append(endpoint("test/c2", "anth-raw", "claude-x", "10", "50"))
    world.catalog(data)
    seen: list[tuple[Any, ...]] = []
    for prompt in ("hello there", ["hello there", "hello again"]):
        response = httpx.post(
            f"{world.gateway_url}/v1/completions",
            headers={"Authorization": f"Bearer {world.key}"},
            json={"model": "test/c2", "prompt": prompt, "max_tokens": 5,
                  "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            timeout=30,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        answer = response.json()
        record = world.usage_record(answer["id"])
        shown = answer["usage"]["prompt_tokens_details"]["cache_write_tokens"]
        seen.append((record.prompt_tokens, record.cache_write_tokens, shown, record.cost))
    one, two = seen
    assert one[1:3] == (WRITTEN, WRITTEN)
    assert two[:3] == (2 * one[0], 2 * WRITTEN, 2 * WRITTEN)
    assert (
        two[3] == 2 * one[3]
    )  # each prompt's hour write at twice the input price, not the plain input price
    assert one[3] > Decimal(WRITTEN) * 10 / 1_000_000 * Decimal("1.5")
