"""The prompt estimate every request computes on the shared event loop (the rate limiter admits
on it, ``count_tokens`` answers it, an unreported prompt is billed it) costs memory and work in
proportion to the prompt's bytes, never an object per character. Before, counting the CJK
characters built a list of one string per character: a 20 MB body of Chinese took ~2.7 s of the
loop and ~550 MB, before any limit was checked (now ~0.13 s and a few copies of its bytes)."""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Callable

import httpx

from routing.gateway.token_bounds import prompt_token_floor
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


def _peak_during(post: Callable[[], httpx.Response]) -> tuple[httpx.Response, int]:
    tracemalloc.start()
    try:
        answer = post()
        return answer, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_prompt_past_every_window_is_refused_without_a_string_per_word(world: World) -> None:
    """A prompt whose bytes exceed the window has its words counted (the floor that refuses it
    when even they overflow): 1.5 million two-letter words, a 4.5 MB body. Before, ``split()``
    made a string per word: ~90 MB here, ~400 MB and ~1 s of the loop for a 20 MB body."""
    body = {"model": "test/gpt", "messages": [{"role": "user", "content": "ab " * 1_500_000}]}
    payload = httpx.Request("POST", "/", json=body).content

    answer, peak = _peak_during(
        lambda: httpx.post(
            f"{world.gateway_url}/v1/chat/completions",
            content=payload,
            headers={"Authorization": f"Bearer {world.key}", "content-type": "application/json"},
            timeout=60,
        )
    )

    assert answer.status_code == 400, answer.text[:300]
    assert answer.json()["error"]["type"] == "context_length_exceeded"
    # ~14x its 4.5 MB (measured): the body, its text, the bounds' copies. A string per word
    # (the old count) added 30 MB more.
    assert peak < 16 * len(payload), (
        f"peak {peak / 1e6:.0f} MB for a {len(payload) / 1e6:.0f} MB body"
    )


def test_the_word_floor_counts_what_split_counts() -> None:
    """Every whitespace ``str.split`` knows separates words (Unicode's too), none else."""
    texts = ["", " ", "a", " a ", "ab cd\tef\n", "a\u3000b\u00a0c\u2028d", "a \u3000 b", "\x1cx\x1f",
             "中文 かな", "😀 😀", "a\u200bb", "\u0085\u1680\u205f"]  # fmt: skip
    for text in texts:
        body = {"messages": [{"role": "user", "content": text}, {"role": "user", "content": text}]}
        assert prompt_token_floor(body) == 2 * len(text.split()), repr(text)


def test_the_word_floor_allocates_a_few_copies_of_the_text_bytes() -> None:
    text = "ab " * 500_000
    tracemalloc.start()
    try:
        floor = prompt_token_floor({"messages": [{"role": "user", "content": text}]})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert floor == 500_000
    assert peak < 3 * len(text)  # old code: ~20x (a 50-byte string and a pointer a word)
