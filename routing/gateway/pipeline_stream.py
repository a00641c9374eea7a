"""``stream: true`` on a pipeline (``routing.gateway.pipeline``): live or buffered.

- **Live**: a cascade step without a post-call gate, when no step before it was called (each
  was skipped by its pre-call gate, or there was none), is relayed as the provider streams it
  (``streaming.open_stream`` / ``pump``, as for a plain model); the usage chunk, when the client
  asked for one, also carries the ``pipeline`` object. Nothing is known about a gated answer
  before it is whole, so every other case is
- **buffered**: the pipeline runs to its end (post-call gates, series, parallel), then the
  served answer is sent as a well-formed stream of the client's kind — OpenAI chat chunks
  (which ``/v1/responses`` rewrites into its events) or Anthropic Messages events: the whole
  answer in one delta per choice, the finish reason, then the usage chunk (OpenAI: when
  ``stream_options.include_usage`` asked; it and the first chunk carry ``pipeline``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson

from routing.gateway.attempts import deadline_stop
from routing.gateway.exchange import Exchange, bill
from routing.gateway.limits import rate_limit_headers
from routing.gateway.pipeline_steps import Step, child_exchange, step_account, step_record
from routing.gateway.streaming import (
    ENDING_KEYS,
    finish_apart,
    open_stream,
    pump,
    usage_requested,
)
from routing.gateway.usage_estimate import partial_usage
from routing.ingress.anthropic import MessagesStreamEncoder
from routing.providers.answer_checks import TEXT_FIELDS
from routing.providers.base import JSON, Usage

_STREAM_FIELDS = ("stream", "stream_options", "usage")


async def stream_live(
    parent: Exchange, step: Step, pipeline_head: Callable[[list[JSON]], JSON]
) -> bool:
    """Stream ``step`` to the client as it comes; False when no candidate opened a stream (the
    call is then recorded as failed, at no cost, and the cascade goes on)."""
    kept = {name: parent.body[name] for name in _STREAM_FIELDS if name in parent.body}
    child = child_exchange(parent, step, step.body | kept)
    child.generation_id, child.anthropic = parent.generation_id, parent.anthropic
    for tried, candidate in enumerate(child.plan.candidates):
        if deadline_stop(child, tried) is not None:  # the request's deadline (``attempts``)
            child.deadline_stopped = True
            break
        opened = await open_stream(child, candidate)
        if opened is None:
            continue
        child.stream_tail = lambda: {
            "pipeline": pipeline_head([*parent.draft.steps, step_record(child, step, "none")])
        }
        try:
            await pump(child, candidate, opened)
        except asyncio.CancelledError:  # the client left (or the server): what came is billed
            if not child.billed:  # (not again if it left during the last write)
                error = parent.cancelled_by
                bill(child, partial_usage(child), status="aborted", error_type=error)
            raise
        finally:
            step_account(parent, child, step, "none")
            parent.answer_parts += child.answer_parts
            parent.first_byte_at = child.first_byte_at
            bill(parent, Usage(), status=child.draft.status, error_type=child.draft.error_type)
            parent.draft.model, parent.draft.provider = child.draft.model, child.draft.provider
        return True
    step_account(parent, child, step, "no_answer")
    return False


async def stream_buffered(ex: Exchange, body: JSON, usage: Usage) -> None:
    """Send a whole pipeline answer (``body``, a chat completion) as a stream."""
    headers = {"x-generation-id": ex.generation_id} | rate_limit_headers(ex.key)
    await ex.req.start_stream(headers=headers)
    choices = [_as_delta(choice) for choice in body["choices"]]
    if ex.anthropic:
        encoder = MessagesStreamEncoder(ex.generation_id, body["model"])
        started = Usage(usage.prompt_tokens, 0, usage.cached_tokens)
        started.cache_write_tokens = usage.cache_write_tokens
        started.cache_write_1h_tokens = usage.cache_write_1h_tokens
        out = encoder.start(started) + b"".join(encoder.chunk(choice) for choice in choices)
        await ex.req.write(out + encoder.finish(usage, body["usage"]["cost"]))
    else:
        await ex.req.write(b"".join(_openai_chunks(ex, body, choices)))
    await ex.req.end()


def _as_delta(choice: JSON) -> JSON:
    """A whole answer's choice as one stream chunk's choice."""
    message = choice.get("message") or {}
    delta: JSON = {"role": "assistant"}
    for name in TEXT_FIELDS:  # as a stream relays them (before: reasoning_content left out)
        if message.get(name):
            delta[name] = message[name]
    calls = message.get("tool_calls") or []
    if calls:
        delta["tool_calls"] = [call | {"index": i} for i, call in enumerate(calls)]
    streamed: JSON = {"index": choice.get("index", 0), "delta": delta}
    if choice.get("logprobs"):
        streamed["logprobs"] = choice["logprobs"]
    streamed |= {k: choice[k] for k in ENDING_KEYS if choice.get(k) is not None}
    return streamed | {"finish_reason": choice.get("finish_reason") or "stop"}


def _openai_chunks(ex: Exchange, body: JSON, choices: list[JSON]) -> list[bytes]:
    head = {name: body[name] for name in ("id", "created", "model", "provider")}
    head["object"] = "chat.completion.chunk"
    content, finish = finish_apart(choices)  # each choice has a delta and a finish reason
    chunks: list[JSON] = [
        head | {"choices": content, "pipeline": body["pipeline"]},
        head | {"choices": finish},
    ]
    if usage_requested(ex.body):
        chunks.append(head | {"choices": [], "usage": body["usage"], "pipeline": body["pipeline"]})
    return [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks] + [b"data: [DONE]\n\n"]
