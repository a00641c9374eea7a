"""OpenAI request options the fake honours on top of its one answer (``wire.openai_response`` and
``wire.openai_stream``): ``n`` (that many identical choices, counted n times), ``logprobs`` with
``top_logprobs`` (a deterministic log probability per token, and that many alternatives), and
``reasoning_effort`` (hidden reasoning tokens counted in the usage, as OpenAI's reasoning models
report them; a model the fake already makes reason keeps its own count), ``prediction`` (every
predicted token rejected: the fake's answer never uses it, and OpenAI counts rejected prediction
tokens in ``completion_tokens``) and ``service_tier`` (the tier served, said in the answer as
OpenAI says it: "auto" is served as "default")."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import orjson

from routing.fake_upstream.answers import split_tokens

JSON = dict[str, Any]

REASONING_TOKENS = {"minimal": 4, "low": 8, "medium": 16, "high": 32, "xhigh": 64}


def _choices_wanted(body: JSON) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def _logprob(token: str, rank: int = 0) -> float:
    digest = hashlib.sha256(f"{token}:{rank}".encode()).digest()
    return -round(rank + digest[0] / 255, 4)


def _token_logprobs(text: str, top: int) -> list[JSON]:
    out: list[JSON] = []
    for token in split_tokens(text):
        alternatives = [{"token": token, "logprob": _logprob(token), "bytes": list(token.encode())}]
        for rank in range(1, top):
            other = f"{token.strip()}_{rank}"
            alternatives.append(
                {"token": other, "logprob": _logprob(token, rank), "bytes": list(other.encode())}
            )
        out.append(alternatives[0] | {"top_logprobs": alternatives[:top]})
    return out


def _logprobs_for(body: JSON, text: str | None) -> JSON | None:
    if body.get("logprobs") is not True:
        return None
    top = body.get("top_logprobs")
    count = top if isinstance(top, int) and not isinstance(top, bool) else 0
    return {"content": _token_logprobs(text or "", count), "refusal": None}


def _usage(usage: JSON, body: JSON, n: int) -> JSON:
    """The usage for ``n`` choices and the effort's reasoning; counts a fault made impossible
    (``faults.reported``: negative, fractional, not numbers) are left as the fault wrote them."""
    details = dict(usage.get("completion_tokens_details") or {})
    counts = (
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        details.get("reasoning_tokens", 0),
    )
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        return usage
    effort = body.get("reasoning_effort")
    reasoning = int(details.get("reasoning_tokens", 0))
    if isinstance(effort, str) and not reasoning:  # a model that always reasons keeps its count
        reasoning = REASONING_TOKENS.get(effort, 0)
    visible = int(usage["completion_tokens"]) - int(details.get("reasoning_tokens", 0))
    rejected = _prediction_tokens(body)
    completion = visible * n + reasoning + rejected * n
    details["reasoning_tokens"] = reasoning
    if body.get("prediction") is not None:
        details |= {"accepted_prediction_tokens": 0, "rejected_prediction_tokens": rejected * n}
    total = int(usage["prompt_tokens"]) + completion
    return usage | {
        "completion_tokens": completion,
        "total_tokens": total,
        "completion_tokens_details": details,
    }


def _prediction_tokens(body: JSON) -> int:
    prediction = body.get("prediction")
    content = prediction.get("content") if isinstance(prediction, dict) else None
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return len(split_tokens(content)) if isinstance(content, str) else 0


def _tier(body: JSON) -> JSON:
    tier = body.get("service_tier")
    if not isinstance(tier, str):
        return {}
    return {"service_tier": "default" if tier == "auto" else tier}


def openai_whole(response: JSON, body: JSON) -> JSON:
    """A whole answer with the body's ``n``, ``logprobs`` and ``reasoning_effort`` applied."""
    n = _choices_wanted(body)
    (first,) = response["choices"]
    logprobs = _logprobs_for(body, first["message"].get("content"))
    if logprobs is not None:
        first = first | {"logprobs": logprobs}
    choices = [first | {"index": index} for index in range(n)]
    usage = _usage(response["usage"], body, n)
    return response | {"choices": choices, "usage": usage} | _tier(body)


def openai_stream(chunks: Iterator[bytes], body: JSON, tier_in: str = "") -> Iterator[bytes]:
    """A stream with the same options applied, chunk by chunk; ``tier_in`` (``first``,
    ``usage``): the one chunk that says ``service_tier`` (every chunk when "")."""
    n = _choices_wanted(body)
    for position, raw in enumerate(chunks):
        payload = raw.removeprefix(b"data: ").strip()
        if payload == b"[DONE]":
            yield raw
            continue
        chunk = orjson.loads(payload)
        choices = []
        for choice in chunk["choices"]:
            logprobs = _logprobs_for(body, choice["delta"].get("content"))
            if logprobs is not None and choice["delta"].get("content"):
                choice = choice | {"logprobs": logprobs}
            choices += [choice | {"index": index} for index in range(n)]
        chunk["choices"] = choices
        if chunk.get("usage"):
            chunk["usage"] = _usage(chunk["usage"], body, n)
        if (
            not tier_in
            or (tier_in == "first" and position == 0)
            or (tier_in == "usage" and chunk.get("usage"))
        ):
            chunk |= _tier(body)
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"


def openai_refusal(body: JSON) -> str | None:
    """What OpenAI's chat wire refuses of a request's messages, as it says it: an image in a
    tool message (its text parts only)."""
    for index, message in enumerate(body.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        parts = content if isinstance(content, list) else []
        if message.get("role") == "tool" and any(
            isinstance(part, dict) and part.get("type") == "image_url" for part in parts
        ):
            return (
                f"Invalid 'messages[{index}]'. Image URLs are only allowed for messages with role "
                "'user', but this message with role 'tool' contains an image URL."
            )
    return None
