"""What a chat request may cost: its prompt-size estimate and bounds, its output bound and the
credit hold they make (``request_shape`` validates the request first)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import TYPE_CHECKING

import orjson
from django.conf import settings

from billing.metering import reservation_amount
from routing.gateway.catalog_cache import EndpointInfo
from routing.image_tokens import (
    IMAGE_CONTEXT_TOKENS,
    ImageAsk,
    image_tokens_beyond_context,
    images_asked,
)
from routing.providers.base import JSON, text_of
from routing.providers.cache_marks import longest_ttl
from training.serving import billed_tokens

if TYPE_CHECKING:
    from routing.gateway.planning import Candidate  # planning reads this module's bounds

# Template tokens around one message (role markers, separators): OpenAI's is 3-4.
_MESSAGE_TOKENS = 16
# The system prompt a provider adds when tools or a response schema are given (Anthropic's
# tool-use prompt is 346 tokens, the largest published).
_TOOL_PROMPT_TOKENS = 512


def prediction_token_bound(body: JSON, endpoint: EndpointInfo) -> int:
    """The most output tokens a prediction can add per choice: OpenAI bills the prediction's
    rejected tokens as completion tokens, beside the ``max_completion_tokens`` answer; none of a
    prediction's tokens can be more than its UTF-8 bytes (``prompt_token_bound``'s reason). Only
    OpenAI-style endpoints get ``prediction``."""
    prediction = body.get("prediction")
    if endpoint.api_style != "openai" or not isinstance(prediction, dict):
        return 0
    return len(text_of(prediction.get("content")).encode())


def estimate_prompt_tokens(body: JSON) -> int:
    """A central estimate of the prompt's tokens (its texts by script, ``billed_tokens``, plus
    ≈4 template tokens a message): what the rate limiter admits on, and what a request is billed
    when its provider reports no usable prompt count. Not a bound (a tokenizer can give several
    tokens per character): the hold is ``prompt_token_bound``'s. Before, characters ÷ 3, which
    billed an English prompt ~1.3x (a repetitive one ~1.8x) what the provider counted."""
    tokens = 3.0
    images = 0
    for message in body["messages"]:
        content = message.get("content")
        tokens += billed_tokens(text_of(content)) + 4
        if isinstance(content, list):
            images += sum(
                1 for p in content if isinstance(p, dict) and p.get("type") == "image_url"
            )
        for call in message.get("tool_calls") or []:
            tokens += billed_tokens(orjson.dumps(call).decode())
    if body.get("tools"):
        tokens += billed_tokens(orjson.dumps(body["tools"]).decode())
    return math.ceil(tokens) + images * IMAGE_CONTEXT_TOKENS


def estimate_counted_tokens(body: JSON) -> int:
    """What ``/v1/responses/input_tokens`` answers: ``estimate_prompt_tokens`` plus a
    ``response_format``'s schema, which providers put in the prompt (the limiter's estimate,
    shared with billing, leaves it out)."""
    response_format = body.get("response_format")
    extra = billed_tokens(orjson.dumps(response_format).decode()) if response_format else 0
    return estimate_prompt_tokens(body) + math.ceil(extra)


def prompt_token_bound(body: JSON) -> int:
    """The most prompt tokens this request can be counted as, for the credit hold.

    A byte-level BPE tokenizer (OpenAI's, Anthropic's; SentencePiece with byte fallback for
    Gemini) never makes more tokens than the UTF-8 bytes it reads, so the bound is the byte
    count of everything that becomes prompt text — message texts and names, tool calls, tool
    results, tool definitions, a response schema and any other content part — plus each
    message's template tokens and the system prompt providers add for tools. An image is
    counted as ``IMAGE_CONTEXT_TOKENS`` (its share of a context window): its tokens depend on its
    pixels, not on the bytes of its URL, and what a provider bills beyond that is each
    endpoint's (``image_tokens_beyond_context``, added to the hold and to what a count may be)."""
    total = 8
    images = 0
    for message in body["messages"]:
        content = message.get("content")
        total += _MESSAGE_TOKENS + len(text_of(content).encode())
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image_url":
                images += 1
            elif part.get("type") != "text":
                total += len(orjson.dumps(part))  # audio, files: their encoded bytes
        for name in ("name", "tool_call_id", "refusal"):
            if isinstance(message.get(name), str):
                total += len(message[name].encode())
        if message.get("tool_calls"):
            total += len(orjson.dumps(message["tool_calls"]))
    response_format = body.get("response_format") or {}
    extras = [body["tools"]] if body.get("tools") else []
    extras += [response_format] if response_format.get("type", "text") != "text" else []
    for extra in extras:
        total += len(orjson.dumps(extra))
    if extras:
        total += _TOOL_PROMPT_TOKENS
    return total + images * IMAGE_CONTEXT_TOKENS


def prompt_token_floor(body: JSON) -> int:
    """The fewest tokens the prompt's message texts can be, to refuse a prompt no context window
    holds without ever refusing one that fits (``prompt_token_bound`` is the upper bound).

    One token per whitespace-separated word: the tokenizers split text at whitespace before
    merging, so no token spans two words (by construction for the pre-tokenizer regexes of
    OpenAI's cl100k/o200k and Llama 3, and for SentencePiece with its default
    ``split_by_whitespace``; Anthropic's tokenizer is unpublished and assumed alike). Neither characters/4 nor bytes/4 is a lower
    bound: one token can be a run of 16+ identical characters, spaces or digits. Text without
    spaces (Chinese, Japanese, one long URL) counts as few words: it is never refused early,
    only sent; templates, tools and images add tokens this floor leaves out."""
    return sum(word_count(text_of(message.get("content"))) for message in body["messages"])


# What ``str.split()`` splits at: ASCII's whitespace and separators (a byte table, 1 = space),
# and, by the high byte of a UTF-16 code unit, the low bytes that are whitespace in its block
# (all of Unicode's whitespace is below U+3001).
_ASCII_SPACES = bytes(int(value < 0x80 and chr(value).isspace()) for value in range(256))
_SPACE_BLOCKS = sorted({c >> 8 for c in range(0x3001) if chr(c).isspace()})
_SPACE_GROUPS = [
    (
        high,
        bytes(int(value == high) for value in range(256)),
        bytes(int(chr(high << 8 | value).isspace()) for value in range(256)),
    )
    for high in _SPACE_BLOCKS
]


def word_count(text: str) -> int:
    """``len(text.split())``, counted in C: a text's code units marked 1 where whitespace, then
    the words' starts (a space followed by anything else). Before, ``split()`` made a string
    per word on the event loop: a 20 MB prompt past every window took ~1 s and ~400 MB."""
    if text.isascii():
        marks = text.encode().translate(_ASCII_SPACES)
    else:
        units = text.encode("utf-16-be", "surrogatepass")
        highs, lows = units[0::2], units[1::2]
        spaces = 0
        for high, in_block, space_low in _SPACE_GROUPS:
            if highs.find(high) != -1:
                block = int.from_bytes(highs.translate(in_block))
                spaces |= block & int.from_bytes(lows.translate(space_low))
        marks = spaces.to_bytes(len(highs))
    return marks.count(b"\x01\x00") + (marks[:1] == b"\x00")


def max_tokens_for(body: JSON, endpoint: EndpointInfo) -> int:
    requested = body.get("max_completion_tokens") or body.get("max_tokens")
    if requested is None:
        return min(endpoint.max_output, int(settings.GATEWAY_DEFAULT_MAX_TOKENS))
    return min(int(requested), endpoint.max_output)


def output_token_bound(body: JSON, endpoint: EndpointInfo) -> int:
    """The output tokens the provider may bill at most: ``max_tokens`` per choice, plus the
    rejected tokens of a ``prediction`` (``prediction_token_bound``)."""
    per_choice = max_tokens_for(body, endpoint) + prediction_token_bound(body, endpoint)
    return per_choice * int(body.get("n") or 1)


def reservation_for(
    body: JSON,
    candidate: Candidate,
    prompt_bound: int,
    cache_ttl: str | None,
    images: list[ImageAsk],
) -> Decimal:
    """``cache_ttl``: ``longest_ttl(body)``, and ``images``: ``images_asked(body)``, read once per
    request by ``reservation_max``."""
    amount = reservation_amount(
        candidate.endpoint.prices,
        prompt_tokens=prompt_bound
        + image_tokens_beyond_context(images, candidate.endpoint.image_tokens),
        max_output_tokens=output_token_bound(body, candidate.endpoint),
        # Only Anthropic endpoints get the marks: there a write may cost more than a prompt.
        cache_ttl=cache_ttl if candidate.endpoint.api_style == "anthropic" else None,
    )
    return amount * settings.BYOK_FEE_RATE if candidate.is_byok else amount


def reservation_max(body: JSON, candidates: list[Candidate], prompt_bound: int) -> Decimal:
    """The largest hold any candidate needs; the body's marks and images are read once, not per
    candidate."""
    ttl, images = longest_ttl(body), images_asked(body)
    return max(reservation_for(body, c, prompt_bound, ttl, images) for c in candidates)
