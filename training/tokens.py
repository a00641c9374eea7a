"""Request-size estimates shared by training (cost columns) and serving (expected cost), kept
free of heavy imports so gateway workers load them without LightGBM or pandas."""

from __future__ import annotations

DEFAULT_OUTPUT_TOKENS = 256


def estimated_tokens(prompt: str) -> float:
    """Rough request size in tokens (4 characters per token plus a typical completion)."""
    return len(prompt) / 4.0 + DEFAULT_OUTPUT_TOKENS
