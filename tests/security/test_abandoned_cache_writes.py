"""A call to Anthropic abandoned with its request at the provider, whose request carried
prompt-caching marks, is billed its prompt estimate with the part up to the last mark as a
cache write (1.25x the input price for 5 minutes, 2x for an hour), as Anthropic bills it; the
rest at the input price. Before, the whole estimate was billed at 1x. A prompt sent to a
provider that timed out is estimated the same way."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from billing.models import Reservation, UsageRecord
from routerhub.money import money
from tests.routing.servers import poll
from tests.routing.world import World, base_catalog, endpoint, model

DOCUMENT = "The lighthouse keeper logs every ship that passes the cape. " * 300
QUESTION = "Which ships passed on the stormiest night, and why did they sail? " * 100
INPUT = Decimal(3)  # USD per 1M input tokens of the slow Anthropic endpoint
M = Decimal(1_000_000)


def _slow_claude(world: World, fault: str) -> None:
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/slow-claude"))
    data["endpoints"].append(
        endpoint("test/slow-claude", "fake-anthropic", f"claude-sonnet-4-5@{fault}", "3", "15")
    )
    world.catalog(data)


def _marked(ttl: str) -> dict[str, object]:
    mark = {"type": "ephemeral", "ttl": ttl}
    return {
        "model": "test/slow-claude",
        "max_tokens": 50,
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": DOCUMENT, "cache_control": mark}]},
            {"role": "user", "content": QUESTION},
        ],
    }  # fmt: skip


def _assert_prefix_billed_as_a_write(record: UsageRecord, multiplier: Decimal) -> None:
    written = record.cache_write_tokens
    # The marked document's share of the prompt is written; the question after it is not.
    share = len(DOCUMENT) / (len(DOCUMENT) + len(QUESTION))
    assert abs(written / record.prompt_tokens - share) < 0.05
    expected = money(((record.prompt_tokens - written) * INPUT + written * INPUT * multiplier) / M)
    assert record.cost == expected
    assert record.cost > money(record.prompt_tokens * INPUT / M)  # more than 1x
    assert "usage_estimated" in record.flag_list
    assert record.cost <= Reservation.objects.get(generation_id=record.generation_id).amount


@pytest.mark.parametrize(("ttl", "multiplier"), [("5m", Decimal("1.25")), ("1h", Decimal(2))])
def test_an_abandoned_marked_call_to_anthropic_bills_its_prefix_as_a_cache_write(
    world: World, ttl: str, multiplier: Decimal
) -> None:
    _slow_claude(world, "delay=4000")

    world.client_leaves("/v1/chat/completions", _marked(ttl), after=1.0)

    record = poll(lambda: UsageRecord.objects.filter(organization=world.organization).first())
    assert (record.status, record.model) == ("aborted", "test/slow-claude")
    _assert_prefix_billed_as_a_write(record, multiplier)


def test_a_marked_call_anthropic_never_answered_bills_its_prefix_as_a_cache_write(
    world: World, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.5
    _slow_claude(world, "timeout")

    answer = httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json=_marked("5m"),
        timeout=30,
    )

    assert answer.status_code == 408, answer.text[:300]

    record = poll(lambda: UsageRecord.objects.filter(organization=world.organization).first())
    assert (record.status, record.error_type) == ("failed", "upstream_timeout")
    _assert_prefix_billed_as_a_write(record, Decimal("1.25"))
