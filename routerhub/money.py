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


# The dashboard's one way to write an amount (templates use the ``usd`` filter, charts these).
DISPLAY_QUANTUM = Decimal("0.000001")


def usd_text(value: Decimal) -> str:
    """``value`` as the dashboard writes it, without markup."""
    shown = value.quantize(DISPLAY_QUANTUM, rounding=ROUND_HALF_EVEN)
    if shown == 0 and value != 0:
        return "<$0.000001"  # in magnitude; the title has the sign and the value
    whole, _, decimals = f"{abs(shown):,f}".partition(".")
    decimals = decimals.rstrip("0").ljust(2, "0")
    return f"{'-' if shown < 0 else ''}${whole}.{decimals}"


def exact_text(value: Decimal) -> str:
    return f"{'-' if value < 0 else ''}${abs(value):f}"
