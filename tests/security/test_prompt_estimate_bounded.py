"""The prompt estimate every request computes on the shared event loop (the rate limiter admits
on it, ``count_tokens`` answers it, an unreported prompt is billed it) costs memory and work in
proportion to the prompt's bytes, never an object per character. Before, counting the CJK
characters built a list of one string per character: a 20 MB body of Chinese took ~2.7 s of the
loop and ~550 MB, before any limit was checked (now ~0.13 s and a few copies of its bytes)."""

from __future__ import annotations

import math
import tracemalloc

import httpx

from tests.routing.world import World
from training.tokens import billed_tokens

_CHARACTERS = 1_500_000  # of Chinese: 4.5 MB of UTF-8


def test_count_tokens_on_a_long_cjk_prompt_allocates_in_proportion_to_its_bytes(
    world: World,
) -> None:
    text = "中" * _CHARACTERS
    body = {"model": "test/claude", "messages": [{"role": "user", "content": text}]}
    payload = httpx.Request("POST", "/", json=body).content

    tracemalloc.start()
    try:
        answer = httpx.post(
            f"{world.gateway_url}/v1/messages/count_tokens",
            content=payload,
            headers={"x-api-key": world.key, "content-type": "application/json"},
            timeout=60,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["input_tokens"] >= math.floor(billed_tokens(text))
    # The body, its parsed text and a few copies of it: ~14x its 4.5 MB (measured). One string
    # per CJK character (the old count) alone was 1.5 million objects, ~127 MB.
    assert peak < 20 * len(payload), (
        f"peak {peak / 1e6:.0f} MB for a {len(payload) / 1e6:.0f} MB body"
    )


def test_the_estimate_counts_cjk_characters_by_script() -> None:
    """The by-script rates stand (README, "A prompt's estimate is central"): ASCII 4 characters
    a token, CJK 0.85 tokens a character, other scripts 0.3."""
    assert billed_tokens("abcd" * 10) == 10
    assert math.isclose(billed_tokens("中文かなカナ한국"), 8 * 0.85)
    assert math.isclose(billed_tokens("привет"), 6 * 0.3)
    assert math.isclose(billed_tokens("中a" * 10), 10 * 0.85 + 10 / 4)
    assert math.isclose(billed_tokens("😀中"), 0.3 + 0.85)
