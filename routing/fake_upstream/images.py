"""What the fake counts for a request's media: each image by its provider's documented formula
for the model (``catalog.toml``'s ``image_tokens``, found by upstream model name, computed by
``routing.image_tokens`` as the gateway's hold is), other media 85 tokens each."""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any

from routing.image_tokens import (
    UNDESCRIBED,
    ImageAsk,
    ImageTokens,
    base64_image_size,
    image_rule,
    image_tokens,
    image_url_ask,
)

_CATALOG = Path(__file__).resolve().parents[1] / "catalog.toml"
_KINDS = ("image_url", "image", "document", "file", "inlineData", "fileData")
_OTHER_MEDIA_TOKENS = 85


@functools.cache
def _rules() -> dict[str, ImageTokens]:
    with _CATALOG.open("rb") as handle:
        data = tomllib.load(handle)
    by_model = {m["id"]: m.get("image_tokens") for m in data.get("models", [])}
    rules: dict[str, ImageTokens] = {}
    for endpoint in data.get("endpoints", []):
        description = endpoint.get("image_tokens", by_model.get(endpoint["model"]))
        rules.setdefault(endpoint["upstream_model"], image_rule(description))
    return rules


def model_image_rule(model: str) -> ImageTokens:
    """The catalog's formula for an upstream model name; a model it does not name: 4,160."""
    return _rules().get(model, UNDESCRIBED)


def _image(part: dict[str, Any]) -> ImageAsk | None:
    """The part as an image (OpenAI's image_url, Anthropic's image, Gemini's inline image)."""
    if part.get("type") == "image_url":
        return image_url_ask(part.get("image_url"))
    if part.get("type") == "image":
        source = part.get("source") or {}
        data = source.get("data") if source.get("type") == "base64" else None
        return ImageAsk(base64_image_size(data) if isinstance(data, str) else None)
    inline = part.get("inlineData")
    if isinstance(inline, dict) and str(inline.get("mimeType", "")).startswith("image/"):
        data = inline.get("data")
        return ImageAsk(base64_image_size(data) if isinstance(data, str) else None)
    return None


def media_tokens(content: Any, model: str) -> int:
    """The prompt tokens of ``content``'s media on ``model``."""
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if not isinstance(part, dict):
            continue
        image = _image(part)
        if image is not None:
            total += image_tokens(model_image_rule(model), image)
        elif part.get("type") in _KINDS or any(k in part for k in _KINDS[4:]):
            total += _OTHER_MEDIA_TOKENS
    return total
