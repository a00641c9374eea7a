"""The one token estimator, from characters: shared by training (cost columns), routing (expected
cost, prompt size) and the gateway (rate limits, billing a count a provider did not send). Kept
free of heavy imports so gateway workers load it without LightGBM or pandas.

Characters per token is a property of text, not of a tokenizer we run: about 4 for English
(typical), and 3 where an estimate must err high (the rate limiter admits on it, and it bills a
prompt whose provider sent no count). Neither is a bound; bounds come from UTF-8 bytes
(``routing.gateway.request_shape.prompt_token_bound``).
"""

from __future__ import annotations

import math

DEFAULT_OUTPUT_TOKENS = 256
CHARS_PER_TOKEN = 4  # typical
HIGH_CHARS_PER_TOKEN = 3  # an estimate that errs high


def tokens_from_chars(chars: int, *, chars_per_token: int = CHARS_PER_TOKEN) -> int:
    """Whole tokens for ``chars`` characters of text (rounded up)."""
    return math.ceil(chars / chars_per_token)


def text_tokens(text: str) -> float:
    """A prompt's size in tokens, unrounded (expected costs)."""
    return len(text) / CHARS_PER_TOKEN


def estimated_tokens(prompt: str) -> float:
    """Rough request size in tokens: the prompt plus a typical completion."""
    return text_tokens(prompt) + DEFAULT_OUTPUT_TOKENS
