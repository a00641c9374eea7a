"""The one money type: ``Decimal`` USD quantized to 1e-8, stored as DECIMAL(20, 8)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

MONEY_FIELD: dict[str, Any] = {"max_digits": 20, "decimal_places": 8}
MONEY_QUANTUM = Decimal("0.00000001")
ZERO = Decimal("0")


def money(value: Decimal | int | str) -> Decimal:
    """Quantize to storage precision; refuse floats, which cannot represent cents exactly."""
    if isinstance(value, float):
        raise TypeError("money must not be a float; pass a Decimal, int or str")
    return Decimal(value).quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)


def money_str(value: Decimal | None) -> str | None:
    """Decimal string of API.md (``"12.34567800"``)."""
    return None if value is None else f"{money(value):f}"
