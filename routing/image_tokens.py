"""What an image costs in prompt tokens, per model: the one home of the providers' formulas.

The catalog describes each vision model's formula (``image_tokens`` in ``catalog.toml``); the
gateway holds each image at that formula's count for the image's real size (read from a data
URL's header bytes) or, when the size is unknown (a URL, bytes that do not parse), at the most
the model can count for one image. The fake upstream reports images by the same formulas. Plain
Python (no Django): the fake imports it too.

Kinds, as the providers document them (OpenAI's and Anthropic's vision guides, Gemini's token
guide):

- ``tiles`` (OpenAI gpt-4o, gpt-4.1, gpt-5, o-series): ``detail: low`` costs ``base``; otherwise
  the image is fit in 2048x2048, its short side brought down to 768, and each 512-px tile costs
  ``per_tile`` on top of ``base`` (gpt-4o-mini: 2,833 + 5,667 a tile, 48,169 at most).
- ``patches`` (gpt-4.1-mini/nano, gpt-5-mini/nano, o4-mini): 32-px patches, at most 1,536, times
  the model's ``multiplier``.
- ``area`` (Anthropic): width x height / 750 once the long side is at most 1,568 px, and never
  more than ``most`` (1,600: larger images are scaled down first).
- ``gemini``: 258 for an image of at most 384x384; else tiles of a crop unit (the short side / 1.5,
  kept within 256-768 px), ``per_tile`` each; ``max_tiles`` when the size is unknown, and at most
  ``max_tiles`` for any size (a larger image is assumed downscaled to fit, like the others').

Every formula counts an image of known size at most what it counts one of unknown size: the
unknown-size count is each image's worst case, whatever its header claims.
- ``fixed``: ``tokens`` an image, whatever its size (a model whose formula is unpublished).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from dataclasses import dataclass
from typing import Any

# An image's share of a context window (not of the bill), what the gateway's prompt bound counts:
# Anthropic's most for one image, more than OpenAI's context tokens for one (gpt-4o-mini's extra
# image tokens are billed, not read).
IMAGE_CONTEXT_TOKENS = 1600
_KINDS = ("tiles", "patches", "area", "gemini", "fixed")
_HEAD_BYTES = 65536  # a JPEG's size follows its EXIF/ICC segments; no image is decoded past this
_PATCHES_MOST = 1536
# An image of unknown size in an estimate: a typical photo's 1024x1024 at the model's formula
# (gpt-4o-mini 25,501 at high detail, gpt-4o 765, Claude 1,399, Gemini 1,032): central, where
# the hold's unknown-size count is the most.
TYPICAL_SIZE = (1024, 1024)


@dataclass(frozen=True, slots=True)
class ImageTokens:
    """One model's image formula (the catalog's ``image_tokens`` description)."""

    kind: str
    base: int = 0
    per_tile: int = 0
    multiplier: float = 0.0
    most: int = 0  # area: the most one image counts
    max_tiles: int = 0  # gemini: the tiles of an image whose size is unknown
    tokens: int = 0  # fixed


# Unpublished formula (an endpoint the catalog does not describe: a self-hosted or admin-added
# model): Pixtral's most, 1024x1024 at 16-px patches plus a break token a row (4,160), the
# largest of the catalog's OpenAI-compatible vision models whose formula is not described.
UNDESCRIBED = ImageTokens("fixed", tokens=4160)


@dataclass(frozen=True, slots=True)
class ImageAsk:
    """One image of a request: its size when known and the ``detail`` asked for."""

    size: tuple[int, int] | None
    detail: str = "auto"


def image_rule(description: Any) -> ImageTokens:
    """The catalog's description as a formula; ValueError when it is not one (sync refuses it,
    the gateway's catalog cache holds it as ``UNDESCRIBED``)."""
    if not description:
        return UNDESCRIBED
    if not isinstance(description, dict) or description.get("kind") not in _KINDS:
        raise ValueError(f"image_tokens needs a kind among {', '.join(_KINDS)}: {description!r}")
    fields = {k: v for k, v in description.items() if k != "kind"}
    try:
        rule = ImageTokens(description["kind"], **fields)
    except TypeError as error:
        raise ValueError(f"image_tokens {description!r}: {error}") from None
    counts = (rule.base, rule.per_tile, rule.most, rule.max_tiles, rule.tokens)
    # Token counts are whole: a float one would make a count a float, which no Decimal price
    # multiplies. Only the multiplier is a ratio (finite and positive when given).
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts):
        raise ValueError(f"image_tokens {description!r}: counts must be non-negative integers")
    if rule.kind == "gemini" and not rule.max_tiles:
        raise ValueError(f"image_tokens {description!r}: gemini needs max_tiles above 0")
    multiplier = rule.multiplier
    if isinstance(multiplier, bool) or not isinstance(multiplier, int | float):
        raise ValueError(f"image_tokens {description!r}: multiplier must be a number")
    if (
        not math.isfinite(multiplier)
        or multiplier < 0
        or ("multiplier" in fields and not multiplier)
    ):
        raise ValueError(f"image_tokens {description!r}: multiplier must be finite and above 0")
    return rule


def image_tokens(rule: ImageTokens, ask: ImageAsk) -> int:
    """The most tokens ``rule``'s provider counts for the image ``ask``: its size's count, or
    the model's most for one image when the size is unknown."""
    if rule.kind == "fixed":
        return rule.tokens
    if rule.kind == "tiles":
        return rule.base + rule.per_tile * _openai_tiles(ask)
    if rule.kind == "patches":
        patches = _PATCHES_MOST if ask.size is None else _patches(*ask.size)
        return math.ceil(patches * rule.multiplier)
    if rule.kind == "area":
        return rule.most if ask.size is None else min(_area_tokens(*ask.size), rule.most)
    # Gemini scales a large image down before tiling it; we assume to no more than ``max_tiles``
    # (its unknown-size count), so a known size (or a hostile header's 2^31 x 2^31) never holds
    # more than an unknown one: every formula's count is at most its unknown-size count.
    tiles = rule.max_tiles if ask.size is None else min(_gemini_tiles(*ask.size), rule.max_tiles)
    return rule.per_tile * tiles


def _openai_tiles(ask: ImageAsk) -> int:
    if ask.detail == "low":
        return 0
    if ask.size is None:
        return 8  # 2048x768 after both resizes: 4 x 2 tiles, the most any image makes
    width, height = ask.size
    scale = min(1.0, 2048 / max(width, height))  # fit in 2048x2048
    scale *= min(1.0, 768 / (min(width, height) * scale))  # short side at most 768
    return math.ceil(width * scale / 512) * math.ceil(height * scale / 512)


def _patches(width: int, height: int) -> int:
    # Scaled down to at most 1,536 patches when larger (OpenAI): never more than this count.
    return min(math.ceil(width / 32) * math.ceil(height / 32), _PATCHES_MOST)


def _area_tokens(width: int, height: int) -> int:
    scale = min(1.0, 1568 / max(width, height))
    return math.ceil(width * scale * height * scale / 750)


def _gemini_tiles(width: int, height: int) -> int:
    if width <= 384 and height <= 384:
        return 1
    unit = min(max(min(width, height) // 1.5, 256), 768)
    return math.ceil(width / unit) * math.ceil(height / unit)


def base64_image_size(data: str) -> tuple[int, int] | None:
    """The width and height in a base64 image's header (PNG, JPEG, GIF, WebP), decoding at most
    its first 64 KiB (a JPEG's; 48 bytes of the others) and nothing else; None when they cannot
    be read."""
    head = _decoded(data, 64)
    if head[:2] == b"\xff\xd8":
        head = _decoded(data, _HEAD_BYTES // 3 * 4)
    try:
        size = _header_size(head)
    except (struct.error, IndexError):
        return None
    return size if size is not None and size[0] > 0 and size[1] > 0 else None


def _decoded(data: str, chars: int) -> bytes:
    chunk = data[:chars]
    try:
        return base64.b64decode(chunk[: len(chunk) // 4 * 4], validate=True)
    except (binascii.Error, ValueError):
        return b""


def _header_size(head: bytes) -> tuple[int, int] | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    if head[:6] in (b"GIF87a", b"GIF89a"):
        width, height = struct.unpack("<HH", head[6:10])
        return width, height
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """Walk the segments to the first start-of-frame (its height, then width)."""
    at = 2
    while at + 4 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            at += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return width, height
        (length,) = struct.unpack(">H", head[at + 2 : at + 4])
        if length < 2:
            return None
        at += 2 + length
    return None


def images_asked(body: dict[str, Any]) -> list[ImageAsk]:
    """A chat request's images (its ``image_url`` parts): each one's size when its data URL's
    header says it, and its detail."""
    asks = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                asks.append(image_url_ask(part.get("image_url")))
    return asks


def image_tokens_beyond_context(images: list[ImageAsk], rule: ImageTokens) -> int:
    """The prompt tokens ``rule``'s provider may bill for ``images`` beyond the
    ``IMAGE_CONTEXT_TOKENS`` each that the gateway's prompt bound counts: what its hold adds.
    Before, every image was held at 1,600 and gpt-4o-mini bills up to 48,169 for one."""
    return sum(max(0, image_tokens(rule, ask) - IMAGE_CONTEXT_TOKENS) for ask in images)


def image_tokens_estimate(images: list[ImageAsk], rule: ImageTokens) -> int:
    """The tokens ``rule``'s provider most likely counts for ``images``, what a call is billed
    when it sent no count: each image's real size's count, or ``TYPICAL_SIZE``'s when its size is
    unknown (a URL). The worst case (the model's most for one image) is the hold's, never billed:
    gpt-4o-mini's 48,169 for a small URL image, Gemini's 9,288 where it documents 258."""
    return sum(image_tokens(rule, ImageAsk(a.size or TYPICAL_SIZE, a.detail)) for a in images)


def image_url_ask(image: object) -> ImageAsk:
    """An OpenAI ``image_url`` part's ``image_url`` (an object with ``url`` and ``detail``, or a
    bare URL) as an image ask."""
    image = image if isinstance(image, dict) else {"url": image}
    url = image.get("url")
    size = data_url_image_size(url) if isinstance(url, str) else None
    return ImageAsk(size, str(image.get("detail") or "auto"))


def data_url_image_size(url: str) -> tuple[int, int] | None:
    """``base64_image_size`` of a ``data:image/...;base64,`` URL; None for any other URL."""
    if not url.startswith("data:"):
        return None
    header, comma, data = url[5:].partition(",")
    if not comma or not header.endswith(";base64"):
        return None
    return base64_image_size(data)
