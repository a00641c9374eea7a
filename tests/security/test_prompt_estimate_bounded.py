"""The prompt estimate every request computes on the shared event loop (the rate limiter admits
on it, ``count_tokens`` answers it, an unreported prompt is billed it) costs memory and work in
proportion to the prompt's bytes, never an object per character. Before, counting the CJK
characters built a list of one string per character: a 20 MB body of Chinese took ~2.7 s of the
loop and ~550 MB, before any limit was checked (now ~0.13 s and a few copies of its bytes)."""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Callable
from typing import Any

import httpx

from routing.gateway.token_bounds import (
    estimate_prompt_tokens,
    prompt_token_bound,
    prompt_token_floor,
)
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
    # The whole path (the body read, its translation to the canonical request, the estimate),
    # not only the estimate measured below: the body, its parsed text and a few copies, ~14x
    # its 4.5 MB (measured). One object per CJK character anywhere on it (the old count alone)
    # was 1.5 million objects, ~127 MB, ~28x.
    assert peak < 20 * len(payload), (
        f"peak {peak / 1e6:.0f} MB for a {len(payload) / 1e6:.0f} MB body"
    )


def test_the_estimate_of_a_cjk_prompt_allocates_five_bytes_a_character() -> None:
    """``estimate_prompt_tokens`` (what ``count_tokens`` answers and the limiter admits on) on
    1.5 million Chinese characters: their UTF-16 code units (2 bytes a character), the units'
    high and low halves (1 + 1) and one half translated (1), 5 bytes a character at the peak.
    The old count's string per character was ~80 bytes a character (one object and a pointer)."""
    text = "中" * _CHARACTERS

    tokens, peak = _peak_of(lambda: estimate_prompt_tokens(_body(text)))

    assert tokens == math.ceil(3 + billed_tokens(text) + 4)
    assert peak <= 5 * _CHARACTERS + _SLACK, f"{peak / _CHARACTERS:.2f} bytes a character"


def test_the_estimate_counts_cjk_characters_by_script() -> None:
    """The by-script rates stand (README, "A prompt's estimate is central"): ASCII 4 characters
    a token, CJK 0.85 tokens a character, other scripts 0.3."""
    assert billed_tokens("abcd" * 10) == 10
    assert math.isclose(billed_tokens("中文かなカナ한국"), 8 * 0.85)
    assert math.isclose(billed_tokens("привет"), 6 * 0.3)
    assert math.isclose(billed_tokens("中a" * 10), 10 * 0.85 + 10 / 4)
    assert math.isclose(billed_tokens("😀中"), 0.3 + 0.85)


# What a measurement may see beyond the text's copies: the body's dicts, the bounds' ints, and
# whatever another thread of the test process (an idle live server) allocates meanwhile.
_SLACK = 64 * 1024


def _body(text: str) -> dict[str, Any]:
    return {"model": "test/gpt", "messages": [{"role": "user", "content": text}]}


def _peak_of(call: Callable[[], int]) -> tuple[int, int]:
    """``call()``'s answer and the most memory it held at once, in bytes (tracemalloc, which
    counts every allocation: the same on every run). Called once first, untraced, so the
    module's lazily built tables are not counted."""
    call()
    tracemalloc.start()
    try:
        return call(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_prompt_past_every_window_is_refused(world: World) -> None:
    """A prompt whose bytes exceed the window has its words counted (the floor that refuses it
    when even they overflow): 1.5 million two-letter words, a 4.5 MB body. Before, ``split()``
    made a string per word: ~90 MB here, ~400 MB and ~1 s of the loop for a 20 MB body (the
    memory is measured on the bounds alone, below)."""
    body = {"model": "test/gpt", "messages": [{"role": "user", "content": "ab " * 1_500_000}]}
    payload = httpx.Request("POST", "/", json=body).content

    answer = httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        content=payload,
        headers={"Authorization": f"Bearer {world.key}", "content-type": "application/json"},
        timeout=60,
    )

    assert answer.status_code == 400, answer.text[:300]
    assert answer.json()["error"]["type"] == "context_length_exceeded"


def test_the_bounds_of_a_prompt_past_every_window_allocate_two_bytes_a_character() -> None:
    """What the gateway computes to refuse that prompt, measured alone: ``prompt_token_bound``
    (its UTF-8 bytes, 1 a character) then ``prompt_token_floor`` (those bytes and their
    whitespace marks, 2 a character). ``split()``'s string and pointer a word was ~20."""
    text = "ab " * 1_500_000

    def bounds() -> int:
        body = _body(text)
        return prompt_token_bound(body) + prompt_token_floor(body)

    total, peak = _peak_of(bounds)

    assert total == prompt_token_bound(_body("")) + len(text) + 1_500_000
    assert peak <= 2 * len(text) + _SLACK, f"{peak / len(text):.2f} bytes a character"


def test_the_word_floor_counts_what_split_counts() -> None:
    """Every whitespace ``str.split`` knows separates words (Unicode's too), none else."""
    texts = ["", " ", "a", " a ", "ab cd\tef\n", "a\u3000b\u00a0c\u2028d", "a \u3000 b", "\x1cx\x1f",
             "中文 かな", "😀 😀", "a\u200bb", "\u0085\u1680\u205f"]  # fmt: skip
    for text in texts:
        body = {"messages": [{"role": "user", "content": text}, {"role": "user", "content": text}]}
        assert prompt_token_floor(body) == 2 * len(text.split()), repr(text)


def test_the_word_floor_allocates_two_bytes_a_character() -> None:
    """ASCII's bytes and their whitespace marks; the old ``split()`` was ~20x (a 50-byte string
    and a pointer a word)."""
    text = "ab " * 500_000

    floor, peak = _peak_of(lambda: prompt_token_floor(_body(text)))

    assert floor == 500_000
    assert peak <= 2 * len(text) + _SLACK, f"{peak / len(text):.2f} bytes a character"
