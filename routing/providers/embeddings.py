"""Embedding requests on the wire: OpenAI's ``/embeddings`` and Gemini's ``batchEmbedContents``.

The canonical request is the client's OpenAI one, validated (``routing.gateway.embeddings``):
``input`` as a list of strings or a list of token arrays, ``dimensions`` optional. Vectors come
back as floats whatever the client asked for; the gateway encodes them (``encoding_format``).
"""

from __future__ import annotations

from typing import Any

from routing.providers.base import JSON, Target, UpstreamError, UpstreamRequest, Usage
from routing.providers.openai_compat import usage_from_openai

EMBEDDING_PARAMETERS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
# API styles with an embeddings endpoint; token-array input is OpenAI's alone.
EMBEDDING_STYLES = frozenset({"openai", "gemini"})


def embedding_request(
    style: str,
    inputs: list[str] | list[list[int]],
    target: Target,
    dimensions: int | None,
    user: str | None,
) -> UpstreamRequest:
    """One request for every input, in the provider's format."""
    headers = {"content-type": "application/json"}
    base = target.base_url.rstrip("/")
    if style == "gemini":
        name = f"models/{target.upstream_model}"
        body: JSON = {
            "requests": [
                {
                    "model": name,
                    "content": {"parts": [{"text": text}]},
                    **({"outputDimensionality": dimensions} if dimensions else {}),
                }
                for text in inputs
            ]
        }
        if target.api_key:
            headers["x-goog-api-key"] = target.api_key
        return UpstreamRequest(f"{base}/{name}:batchEmbedContents", headers, body)
    # Floats upstream: base64 is an encoding of them the gateway applies itself.
    body = {"model": target.upstream_model, "input": inputs, "encoding_format": "float"}
    if dimensions:
        body["dimensions"] = dimensions
    if user:
        body["user"] = user
    if target.api_key:
        headers["authorization"] = f"Bearer {target.api_key}"
    return UpstreamRequest(f"{base}/embeddings", headers, body)


def _vector(values: Any, where: str) -> list[float]:
    if not isinstance(values, list) or not values:
        raise UpstreamError(f"{where} is not a list of numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise UpstreamError(f"{where} is not a list of numbers")
    return [float(v) for v in values]


def embedding_response(style: str, body: Any, count: int) -> tuple[list[list[float]], Usage | None]:
    """The vectors in input order, and the provider's usage (Gemini's batch reports none)."""
    if not isinstance(body, dict):
        raise UpstreamError("the response is not a JSON object")
    if style == "gemini":
        items = body.get("embeddings")
        if not isinstance(items, list) or len(items) != count:
            raise UpstreamError(f"expected {count} embeddings")
        vectors = [
            _vector(item.get("values") if isinstance(item, dict) else None, f"embeddings[{i}]")
            for i, item in enumerate(items)
        ]
        return vectors, None
    data = body.get("data")
    if not isinstance(data, list) or len(data) != count:
        raise UpstreamError(f"expected {count} embeddings in data")
    by_index: dict[int, list[float]] = {}
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            raise UpstreamError(f"data[{position}] is not an object")
        index = item.get("index", position)
        if not isinstance(index, int) or not 0 <= index < count or index in by_index:
            raise UpstreamError(f"data[{position}].index is missing or repeated")
        by_index[index] = _vector(item.get("embedding"), f"data[{position}].embedding")
    return [by_index[i] for i in range(count)], usage_from_openai(body.get("usage"))
