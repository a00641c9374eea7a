"""What a call is billed for: the provider's counts at list price, or, where it sent none, one
that cannot be true or (from an organization's own host) one below its estimate, an estimate
within the hold's bounds (flagged on the record)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from django.conf import settings

from billing.metering import UsageFlag
from routing.gateway.catalog_cache import EndpointInfo
from routing.gateway.token_bounds import output_token_bound
from routing.image_tokens import (
    IMAGE_CONTEXT_TOKENS,
    image_tokens_beyond_context,
    image_tokens_estimate,
    images_asked,
)
from routing.providers.answer_checks import generated_chars
from routing.providers.base import JSON, Completion, Usage
from routing.providers.cache_marks import cached_prefix_shares, has_marks
from training.serving import tokens_from_chars

if TYPE_CHECKING:
    from routing.gateway.exchange import Exchange

logger = logging.getLogger(__name__)


def prompt_estimate_at(ex: Exchange, endpoint: EndpointInfo) -> int:
    """The prompt's central estimate, its images at ``endpoint``'s formula for their real size
    (a typical one when unknown) in place of the 1,600 each ``prompt_estimate`` counts. Before,
    the hold's worst case was billed: 48,169 tokens for a small URL image on gpt-4o-mini."""
    if not ex.prompt_bound:
        return ex.prompt_estimate
    images = images_asked(ex.body)
    text = max(0, ex.prompt_estimate - len(images) * IMAGE_CONTEXT_TOKENS)
    return text + image_tokens_estimate(images, endpoint.image_tokens)


def prompt_estimate_usage(ex: Exchange, endpoint: EndpointInfo) -> Usage:
    """A prompt the provider had but did not count for us, estimated: to Anthropic with
    prompt-caching marks, the part up to the last mark is a cache write (at the last ``1h``
    mark's share for an hour), as Anthropic bills it — never more than the hold priced."""
    estimate = prompt_estimate_at(ex, endpoint)
    usage = Usage(estimate)
    if endpoint.api_style == "anthropic" and has_marks(ex.body):
        upto, upto_hour = cached_prefix_shares(ex.body)
        usage.cache_write_tokens = min(math.ceil(estimate * upto), estimate)
        hour = math.ceil(estimate * upto_hour)
        usage.cache_write_1h_tokens = min(hour, usage.cache_write_tokens)
    return usage


def timed_out_usage(ex: Exchange, endpoint: EndpointInfo) -> Usage:
    """A call that timed out with its request at the provider (``attempts.timed_out``): its
    prompt, estimated, and to a ``hidden_reasoning`` model the reasoning it did meanwhile
    (``_hidden_reasoning``), which the provider bills though nothing came back. Before, the
    prompt alone: a reasoning model that thought past the deadline cost the platform its
    thinking."""
    usage = prompt_estimate_usage(ex, endpoint)
    if endpoint.hidden_reasoning:
        usage.completion_tokens = usage.reasoning_tokens = _hidden_reasoning(ex, endpoint)
    return usage


def partial_usage(ex: Exchange) -> Usage:
    """What a stream produced so far: the provider's count when it sent one, else an estimate."""
    reported = ex.decoder.usage if ex.decoder is not None else None
    final = ex.decoder is not None and ex.decoder.usage_final
    # What the provider generated: what was relayed and what was read but not (excluded thinking).
    generated = ex.generated_chars + (ex.decoder.unrelayed_chars if ex.decoder else 0)
    usage = billable_usage(ex, reported, generated, final=final)
    if ex.endpoint is not None:
        if not final:
            # A stream without its final count (cut short, or ended without one) may carry an
            # early, partial one (Anthropic's message_start). A final count is billed as reported,
            # as a whole answer's is: before, the larger of it and a 4-characters-a-token
            # estimate, so a streamed answer cost more than the same answer unstreamed.
            usage.completion_tokens = max(
                usage.completion_tokens, _completion_estimate(ex, tokens_from_chars(generated))
            )
        if reported is None and ex.endpoint.hidden_reasoning:
            hidden = _hidden_reasoning(ex, ex.endpoint)
            usage.reasoning_tokens = max(0, hidden - usage.completion_tokens)
            usage.completion_tokens = max(usage.completion_tokens, hidden)
    return usage


def _hidden_reasoning(ex: Exchange, endpoint: EndpointInfo) -> int:
    """What a model that reasons unseen (o-series, gpt-5, Gemini 2.5) made since its request was
    sent, when no usage report came: its time at the endpoint's speed, at most its output bound.
    Every ``partial_usage`` without a report: a stream its client left or the server cancelled,
    one whose upstream failed mid-stream, one that completed without a usage chunk, and a
    pipeline's branches (cancelled, timed out, or finished so); and a call that timed out once
    sent (``timed_out_usage``). Before, only its visible text was billed: nothing when stopped
    while reasoning."""
    speed = endpoint.output_tokens_per_second or settings.GATEWAY_REASONING_TOKENS_PER_SECOND
    elapsed = time.monotonic() - ex.sent_at if ex.sent_at is not None else 0.0
    return min(math.ceil(elapsed * speed), output_token_bound(ex.body, endpoint))


def billable_usage(
    ex: Exchange, reported: Usage | None, generated_chars: int, *, final: bool = True
) -> Usage:
    """The provider's counts, to be billed at list price. A count it did not send, or one that
    cannot be true (``Usage.clamped``, a prompt above its byte bound, no token in the final
    count of an answer), is estimated from the text instead and the record flagged: never zero
    for a served answer; an own host's counts are billed no lower than their estimates' share
    (``own_host_floor``, its output's on all it sent). Estimates stay within the hold's bounds
    (but an own host's no lower than that share: ``_completion_estimate``); provider counts need
    not."""
    if ex.endpoint is None:
        return replace(reported) if reported is not None else Usage()
    sent = tokens_from_chars(generated_chars)  # all of it, uncapped: ``own_host_floor``'s
    estimate = _completion_estimate(ex, sent)
    if reported is None:
        ex.draft.flag(UsageFlag.USAGE_ESTIMATED)
        usage = prompt_estimate_usage(ex, ex.endpoint)
        usage.completion_tokens = estimate
        return usage
    usage = replace(reported)
    window = ex.endpoint.context_length
    # A prompt count is impossible only above what the prompt can be: the hold's bound (its UTF-8
    # bytes), or the window when no bound was computed. A count past a catalog window that is
    # stale or too small is still what the provider served, and is billed as reported.
    most = max(window, ex.prompt_bound)
    if most and usage.prompt_tokens > most:  # images are read only then
        most = max(window, ex.prompt_bound + _image_tokens_held(ex, ex.endpoint))
    if most and usage.prompt_tokens > most:
        usage.prompt_tokens, usage.clamped = 0, True
    if window and usage.completion_tokens > window * int(ex.body.get("n") or 1):
        usage.completion_tokens, usage.clamped = 0, True
    if usage.completion_tokens == 0 and generated_chars and final:
        usage.clamped = True  # a cut stream's early count may still be 0
    if usage.clamped:
        logger.warning(
            "generation %s: %s reported impossible usage; billed an estimate",
            ex.generation_id,
            ex.endpoint.provider_slug,
        )
        ex.draft.flag(UsageFlag.USAGE_CLAMPED)
        # One impossible count discredits the report: no count is taken below its estimate.
        _floor(usage, prompt_estimate_at(ex, ex.endpoint), estimate)
    elif usage.prompt_tokens == 0:
        ex.draft.flag(UsageFlag.USAGE_ESTIMATED)
        usage.prompt_tokens = prompt_estimate_at(ex, ex.endpoint)
    if not usage.clamped:  # a clamped count is floored above; ``own_host_floor`` checks the host
        own_host_floor(ex, usage, prompt_estimate_at(ex, ex.endpoint), sent)
    usage.cached_tokens = min(usage.cached_tokens, usage.prompt_tokens)
    usage.cache_write_tokens = min(
        usage.cache_write_tokens, usage.prompt_tokens - usage.cached_tokens
    )
    usage.cache_write_1h_tokens = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
    usage.reasoning_tokens = min(usage.reasoning_tokens, usage.completion_tokens)
    return usage


def own_host_floor(
    ex: Exchange, usage: Usage, prompt_estimate: int, completion_estimate: int
) -> None:
    """An organization's own host (``ex.own_host``) counts its own tokens, and its fee is a
    share of their price: each count is billed no lower than BILLING_OWN_HOST_FLOOR_SHARE of its
    estimate, the record flagged where one was raised — on chat, completions and embeddings
    alike. A provider's own host is billed as it counts. Before, a host that reported 1 prompt
    and 1 completion token took the fee to almost nothing (embeddings had no floor at all)."""
    if not ex.own_host:
        return
    # The long-context tier from the larger of its count and the estimate, not from its share: a
    # host's count at half the estimate would keep prompts up to twice a threshold on the cheaper
    # tier. The central estimate errs either way at the boundary; the host's count cannot lower it.
    usage.tier_prompt_tokens = max(usage.tier_prompt_tokens, prompt_estimate)
    # Each count alone, to its share of its estimate: continuous (a count at 0.49 of it was billed
    # the whole estimate, twice one at 0.5), and an honest count is not raised for the other's.
    share = settings.BILLING_OWN_HOST_FLOOR_SHARE  # an honest tokenizer's counts pass (README)
    floors = math.ceil(prompt_estimate * share), math.ceil(completion_estimate * share)
    if _floor(usage, *floors):
        ex.draft.flag(UsageFlag.USAGE_FLOORED)


def _floor(usage: Usage, prompt_tokens: int, completion_tokens: int) -> bool:
    """``usage``'s counts raised to at least these; whether one was."""
    raised = usage.prompt_tokens < prompt_tokens or usage.completion_tokens < completion_tokens
    usage.prompt_tokens = max(usage.prompt_tokens, prompt_tokens)
    usage.completion_tokens = max(usage.completion_tokens, completion_tokens)
    return raised


def _image_tokens_held(ex: Exchange, endpoint: EndpointInfo) -> int:
    """The image tokens the hold counted for ``endpoint`` beyond ``prompt_bound``'s: their worst
    case, what a provider's count may be (never what an estimate bills)."""
    if not ex.prompt_bound:
        return 0
    return image_tokens_beyond_context(images_asked(ex.body), endpoint.image_tokens)


def choices_chars(choices: list[JSON]) -> int:
    """The characters a whole answer's model generated (``answer_checks.generated_chars``)."""
    return sum(generated_chars(choice.get("message") or {}) for choice in choices)


def completion_chars(completion: Completion) -> int:
    """A whole answer's characters as a stream of it counts them: its messages' and those no
    message holds (``Completion.unrelayed_chars``: Anthropic's redacted or excluded thinking).
    Before, a whole answer's redacted thinking was not counted, a cut stream's was."""
    return choices_chars(completion.choices) + completion.unrelayed_chars


def _completion_estimate(ex: Exchange, sent: int) -> int:
    """The output billed for ``sent`` (≈4 characters a token) where no count can be taken: never
    more than the output the provider was asked for — but from an organization's own host, no
    lower than BILLING_OWN_HOST_FLOOR_SHARE of all it sent, as its counts (``own_host_floor``).
    Capped at ``max_tokens``, ``max_tokens: 1`` took any answer for a token's fee; uncapped, an
    honest host stopping at ``max_tokens`` with no usage was billed past it (~4.5 characters a
    token)."""
    assert ex.endpoint is not None
    capped = min(sent, output_token_bound(ex.body, ex.endpoint))
    if ex.own_host:
        return max(capped, math.ceil(sent * settings.BILLING_OWN_HOST_FLOOR_SHARE))
    return capped


def impossible(usage: Usage | None) -> bool:
    return usage is not None and usage.clamped
