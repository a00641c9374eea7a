"""Holds against what a provider bills, through the gateway and the fake upstream: images counted
by the provider's documented formula (the fake counts them so too), and a stream to a model that
reasons unseen, cut before its usage report, billed the time it generated."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from billing.models import Reservation, UsageFlag, UsageRecord
from tests.routing.servers import poll
from tests.routing.test_image_holds import _image, png
from tests.routing.world import World, endpoint, model

MINI = {"kind": "tiles", "base": 2833, "per_tile": 5667}  # gpt-4o-mini's, as in catalog.toml


def _two_images_on(world: World, upstream: str, url: str = "", count: int = 2) -> UsageRecord:
    """The reviewer's request: two 768x2048 high-detail images, max_tokens 1, on gpt-4o-mini."""
    world.catalog({
        "models": [model("test/mini-vision")],
        "endpoints": [endpoint("test/mini-vision", "fake-openai", upstream, "0.15", "0.60",
                               image_tokens=MINI)],
    })  # fmt: skip
    image = _image(url or png(768, 2048), "high")
    content = [{"type": "text", "text": "describe"}, *[image] * count]
    body = {"model": "test/mini-vision", "max_tokens": 1,
            "messages": [{"role": "user", "content": content}]}  # fmt: skip

    answer = httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body,
                        headers={"Authorization": f"Bearer {world.key}"}, timeout=10)  # fmt: skip

    assert answer.status_code == 200, answer.text
    return world.usage_record(answer.json()["id"])


def test_high_detail_images_on_gpt_4o_mini_are_charged_within_their_hold(world: World) -> None:
    """The fake counts OpenAI's 2 x 48,169 image tokens; the hold covers them (before: a hold
    of 3,232 tokens, and a charge 30x above it that settlement capped at the balance)."""
    record = _two_images_on(world, "gpt-4o-mini")

    assert record.prompt_tokens >= 2 * 48_169
    assert UsageFlag.OVER_HOLD not in record.flag_list
    assert record.cost <= Reservation.objects.get(generation_id=record.generation_id).amount


@pytest.mark.parametrize(
    ("provider_slug", "upstream", "formula", "documented"),
    [
        ("fake-anthropic", "claude-sonnet-4-5", {"kind": "area", "most": 1600}, 1_590),
        ("fake-gemini", "gemini-2.5-flash", {"kind": "gemini", "per_tile": 258, "max_tiles": 36},
         4 * 258),
    ],
)  # fmt: skip
def test_an_image_to_anthropic_or_gemini_is_counted_by_its_formula_within_the_hold(
    world: World, provider_slug: str, upstream: str, formula: dict[str, Any], documented: int
) -> None:
    """A 1092x1092 image: Anthropic documents ~1,590 tokens, Gemini 4 tiles of 258."""
    world.catalog({
        "models": [model("test/vision")],
        "endpoints": [endpoint("test/vision", provider_slug, upstream, image_tokens=formula)],
    })  # fmt: skip
    content = [{"type": "text", "text": "describe"}, _image(png(1092, 1092))]
    body = {"model": "test/vision", "max_tokens": 1,
            "messages": [{"role": "user", "content": content}]}  # fmt: skip

    answer = httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body,
                        headers={"Authorization": f"Bearer {world.key}"}, timeout=10)  # fmt: skip

    assert answer.status_code == 200, answer.text
    record = world.usage_record(answer.json()["id"])
    assert record.prompt_tokens >= documented
    assert UsageFlag.OVER_HOLD not in record.flag_list


def test_images_a_provider_did_not_count_are_estimated_at_the_endpoints_formula(
    world: World,
) -> None:
    """No prompt count (0): the estimate counts the images as the hold did, not 1,600 each."""
    record = _two_images_on(world, "gpt-4o-mini@report_prompt=0")

    assert UsageFlag.USAGE_ESTIMATED in record.flag_list
    assert record.prompt_tokens >= 2 * 48_169
    assert record.cost <= Reservation.objects.get(generation_id=record.generation_id).amount


def test_a_url_image_a_provider_did_not_count_is_billed_a_typical_size_not_the_worst_case(
    world: World,
) -> None:
    """Its size unknown, the hold counts gpt-4o-mini's most (48,169); the bill, a typical
    1024x1024 (25,501 at high detail). Before, the worst case was billed."""
    record = _two_images_on(world, "gpt-4o-mini@report_prompt=0", "https://x.test/a.png", 1)

    assert UsageFlag.USAGE_ESTIMATED in record.flag_list
    assert 25_501 <= record.prompt_tokens < 25_501 + 100


def test_a_provider_count_up_to_a_url_images_worst_case_is_billed_as_reported(
    world: World,
) -> None:
    """An impossible count is still judged against the hold's worst case, not the estimate."""
    record = _two_images_on(world, "gpt-4o-mini@report_prompt=45000", "https://x.test/a.png", 1)

    assert record.prompt_tokens == 45_000
    assert UsageFlag.USAGE_CLAMPED not in record.flag_list


def test_a_stream_cut_while_a_model_reasons_unseen_is_billed_its_generation_time(
    world: World,
) -> None:
    """The fake sends the stream's head, then nothing for 1.5 s (hidden reasoning); the client
    leaves first. Before, only visible text was billed: no completion token at all."""
    world.catalog({
        "models": [model("test/thinker")],
        "endpoints": [endpoint("test/thinker", "fake-openai", "gpt-5-nano@first_event_delay=1500",
                               hidden_reasoning=True)],
    })  # fmt: skip
    body = {"model": "test/thinker", "stream": True, "max_tokens": 1000,
            "messages": [{"role": "user", "content": "Think hard about this."}]}  # fmt: skip

    world.client_leaves("/v1/chat/completions", body, after=0.5)

    record = poll(
        lambda: UsageRecord.objects.filter(
            organization=world.organization, model="test/thinker"
        ).first()
    )
    assert (record.status, record.error_type) == ("aborted", "client_disconnected")
    assert 0 < record.completion_tokens <= 1000  # at most the output the hold counted
    assert record.reasoning_tokens == record.completion_tokens
    assert UsageFlag.USAGE_ESTIMATED in record.flag_list
    assert record.cost <= Reservation.objects.get(generation_id=record.generation_id).amount
