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
from collections.abc import Callable

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
# Han, kana, Hangul syllables, CJK compatibility ideographs, full-width forms: the code points
# U+3040-U+30FF, U+3400-U+4DBF, U+4E00-U+9FFF, U+AC00-U+D7AF, U+F900-U+FAFF, U+FF00-U+FFEF.
_CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF),
               (0xF900, 0xFAFF), (0xFF00, 0xFFEF))  # fmt: skip


def _byte_table(keep: Callable[[int], bool]) -> bytes:
    """A ``bytes.translate`` table: 1 for the byte values ``keep`` holds, else 0."""
    return bytes(int(keep(value)) for value in range(256))


# By the high byte of a UTF-16 code unit: its 256-code-point block is wholly CJK; or shared
# with other scripts (four blocks), with the low bytes that are CJK in each.
_WHOLE = _byte_table(lambda h: any(lo <= h << 8 and h << 8 | 0xFF <= hi for lo, hi in _CJK_RANGES))


def _shared_block(high: int) -> tuple[int, bytes, bytes]:
    """A block shared with other scripts: its high byte, a table marking it, and one marking
    the low bytes that are CJK in it."""
    in_block = _byte_table(lambda h: h == high)
    cjk_low = _byte_table(lambda v: any(lo <= high << 8 | v <= hi for lo, hi in _CJK_RANGES))
    return high, in_block, cjk_low


_SHARED = [
    _shared_block(high)
    for high in range(256)
    if not _WHOLE[high] and any(lo >> 8 <= high <= hi >> 8 for lo, hi in _CJK_RANGES)
]


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
    cjk = _cjk_count(text)
    ascii_chars = len(text) - other
    return ascii_chars / _ASCII_PER_TOKEN + cjk * _CJK_TOKENS + (other - cjk) * _OTHER_TOKENS


def _cjk_count(text: str) -> int:
    """The characters of ``text`` in ``_CJK_RANGES``, counted in C over its UTF-16 code units
    (astral characters are surrogates, never CJK here): a few passes over its bytes, whatever
    the text. Before, a regex's ``findall`` made a string per character — ~80 MB and ~1 s of the
    gateway's event loop for 4 MB of alternating Chinese and ASCII."""
    units = text.encode("utf-16-be", "surrogatepass")
    highs, lows = units[0::2], units[1::2]
    count = len(highs) - highs.translate(_WHOLE).count(0)
    for high, in_block, cjk_low in _SHARED:
        if highs.find(high) == -1:  # memchr: most texts have none of these blocks
            continue
        marked = int.from_bytes(highs.translate(in_block)) & int.from_bytes(lows.translate(cjk_low))
        count += marked.bit_count()
    return count
