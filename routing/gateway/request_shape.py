"""The shape of a chat request: validation, the prompt-size estimate and the output bound."""

from __future__ import annotations

import math
from decimal import Decimal

import orjson
from django.conf import settings

from billing.pricing import reservation_amount
from routerhub.errors import BadRequest
from routing.gateway.catalog_cache import EndpointInfo
from routing.gateway.planning import Candidate
from routing.providers.base import JSON, text_of

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_IMAGE_TOKENS = 1600  # a large image on Anthropic; generous for OpenAI and Gemini tiles
_MAX_CHOICES = 128  # OpenAI's own bound on n; it also keeps the credit hold a sane number
_NUMBERS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")


def _is_content(content: object) -> bool:
    return (
        content is None
        or isinstance(content, str)
        or (isinstance(content, list) and all(isinstance(part, dict) for part in content))
    )


def request_validate(body: JSON) -> None:
    messages_ = body.get("messages")
    if not isinstance(messages_, list) or not messages_:
        raise BadRequest("messages must be a non-empty list.", param="messages")
    for index, message in enumerate(messages_):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise BadRequest(
                f"messages[{index}] needs a role among {', '.join(sorted(_ROLES))}.",
                param="messages",
            )
        if not _is_content(message.get("content")):
            raise BadRequest(
                f"messages[{index}].content must be a string or a list of content parts.",
                param="messages",
            )
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise BadRequest(f"{name} must be a positive integer.", param=name)
    if (body.get("n") or 1) > _MAX_CHOICES:
        raise BadRequest(f"n must be at most {_MAX_CHOICES}.", param="n")
    for name in _NUMBERS:
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise BadRequest(f"{name} must be a number.", param=name)
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise BadRequest("stream must be true or false.", param="stream")
    tools = body.get("tools")
    if tools is not None and not (
        isinstance(tools, list) and all(isinstance(tool, dict) for tool in tools)
    ):
        raise BadRequest("tools must be a list of objects.", param="tools")


def estimate_prompt_tokens(body: JSON) -> int:
    """A deliberately high estimate (≈3 characters per token) used for the credit hold."""
    chars = 0
    images = 0
    for message in body["messages"]:
        content = message.get("content")
        chars += len(text_of(content)) + 16
        if isinstance(content, list):
            images += sum(
                1 for p in content if isinstance(p, dict) and p.get("type") == "image_url"
            )
        for call in message.get("tool_calls") or []:
            chars += len(orjson.dumps(call))
    if body.get("tools"):
        chars += len(orjson.dumps(body["tools"]))
    return math.ceil(chars / 3) + images * _IMAGE_TOKENS + 8


def max_tokens_for(body: JSON, endpoint: EndpointInfo) -> int:
    requested = body.get("max_completion_tokens") or body.get("max_tokens")
    if requested is None:
        return min(endpoint.max_output, settings.GATEWAY_DEFAULT_MAX_TOKENS)
    return min(int(requested), endpoint.max_output)


def reservation_for(body: JSON, candidate: Candidate, prompt_estimate: int) -> Decimal:
    output = max_tokens_for(body, candidate.endpoint) * int(body.get("n") or 1)
    amount = reservation_amount(
        candidate.endpoint.prices, prompt_tokens=prompt_estimate, max_output_tokens=output
    )
    return amount * settings.BYOK_FEE_RATE if candidate.is_byok else amount
