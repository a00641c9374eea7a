"""The one check of a declared price (``options.prices``, Not Diamond's ``LLMConfig`` prices).
Free of heavy imports: routing reaches it through ``training.serving``."""

from __future__ import annotations

import math
from typing import Any

MAX_PRICE = 1e6  # USD per million tokens (or per request): far above any model's price


def price_value(value: Any) -> float | None:
    """A price as a float, or None unless it is a JSON number from 0 to ``MAX_PRICE``: the one
    check of ``options.prices`` and of the prices Not Diamond's ``LLMConfig``s declare. A huge
    integer (``float`` overflows) or a non-finite value is None, not an exception."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        price = float(value)
    except (OverflowError, ValueError):
        return None
    return price if math.isfinite(price) and 0 <= price <= MAX_PRICE else None
