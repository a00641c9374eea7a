"""The one token estimator, from characters: shared by training (cost columns), routing (expected
cost, prompt size) and the gateway (rate limits, billing a count a provider did not send). Kept
free of heavy imports so gateway workers load it without LightGBM or pandas.

Characters per token is a property of text, not of a tokenizer we run: about 4 for English
(typical). ``billed_tokens`` is the gateway's central estimate of a prompt (the rate limiter
admits on it, and it bills a prompt whose provider sent no count), by script. None is a bound;
bounds come from UTF-8 bytes (``routing.gateway.token_bounds.prompt_token_bound``).
"""

from __future__ import annotations

import math
import re

DEFAULT_OUTPUT_TOKENS = 256
CHARS_PER_TOKEN = 4  # typical
# Tokens a character, by script, for ``billed_tokens``: o200k_base's (GPT-4o's), the most frugal
# tokenizer in common use, so that other providers count as many or more. Measured on MMLU, ARC
# and MBPP prompts, this repository's Python, and Django's zh/ja/ko/ru messages (README, "A
# prompt's estimate"): ASCII 3.8-4.5 characters a token, CJK 0.8-0.9 tokens a character, other
# scripts (Cyrillic) ~3.2 characters a token.
_ASCII_PER_TOKEN = 4
_CJK_TOKENS = 0.85
_OTHER_TOKENS = 0.3
# Han, kana, Hangul syllables, CJK compatibility ideographs, full-width forms.
_CJK = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
)


def tokens_from_chars(chars: int, *, chars_per_token: int = CHARS_PER_TOKEN) -> int:
    """Whole tokens for ``chars`` characters of text (rounded up)."""
    return math.ceil(chars / chars_per_token)


def text_tokens(text: str) -> float:
    """A prompt's size in tokens, unrounded (expected costs)."""
    return len(text) / CHARS_PER_TOKEN


def estimated_tokens(prompt: str) -> float:
    """Rough request size in tokens: the prompt plus a typical completion."""
    return text_tokens(prompt) + DEFAULT_OUTPUT_TOKENS


def billed_tokens(text: str) -> float:
    """A text's tokens, central (unrounded): what a prompt the provider did not count is billed.
    Before, characters ÷ 3, which billed English ~1.3x and repetitive English ~1.8x its count
    (and CJK ~0.7x)."""
    if text.isascii():
        return len(text) / _ASCII_PER_TOKEN
    other = len(text) - len(text.encode("ascii", "ignore"))
    cjk = len(_CJK.findall(text))
    ascii_chars = len(text) - other
    return ascii_chars / _ASCII_PER_TOKEN + cjk * _CJK_TOKENS + (other - cjk) * _OTHER_TOKENS
