"""What the fake embedding models return: deterministic unit vectors, in OpenAI's and Gemini's
formats. The same model and text always give the same vector (seeded by their hash)."""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any

from routing.fake_upstream.answers import count_tokens

JSON = dict[str, Any]
DEFAULT_DIMENSIONS = 1536  # text-embedding-3-small's


def embedding_vector(model: str, text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """A unit vector seeded by model and text: the fake's (and the demo's) embedding."""
    seed = int.from_bytes(hashlib.sha256(f"{model}\x1f{text}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _text(item: Any) -> str:
    # A token array embeds as the text of its numbers: deterministic, which is all that matters.
    return item if isinstance(item, str) else " ".join(str(t) for t in item)


def _tokens(item: Any) -> int:
    return (count_tokens(item) or 1) if isinstance(item, str) else len(item)


def openai_embeddings(body: JSON, model: str, reported: JSON) -> JSON:
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else raw or []
    dimensions = int(body.get("dimensions") or DEFAULT_DIMENSIONS)
    tokens = sum(_tokens(item) for item in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    if "prompt" in reported:
        usage = {"prompt_tokens": reported["prompt"], "total_tokens": reported["prompt"]}
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": embedding_vector(model, _text(item), dimensions),
        }
        for i, item in enumerate(inputs)
    ]
    return {"object": "list", "data": data, "model": model, "usage": usage}


def gemini_embeddings(body: JSON, model: str) -> JSON:
    """``batchEmbedContents``: one ``values`` per request, and no token count (as Gemini's)."""
    embeddings = []
    for request in body.get("requests") or []:
        parts = (request.get("content") or {}).get("parts") or []
        text = " ".join(str(p.get("text") or "") for p in parts)
        dimensions = int(request.get("outputDimensionality") or DEFAULT_DIMENSIONS)
        embeddings.append({"values": embedding_vector(model, text, dimensions)})
    return {"embeddings": embeddings}
