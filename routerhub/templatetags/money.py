"""``{{ amount|usd }}``: the dashboard's one money format, with the exact amount on hover.

Amounts show at least two decimals and at most six (a request can cost a few millionths of a
dollar), trailing zeros trimmed: ``$10.00``, ``$9.995``, ``$0.000012``, ``-$0.50``. The title
holds the stored value (8 decimals), so ``$9.995`` and ``$10.00`` can never be confused.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from routerhub.money import money

register = template.Library()

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


@register.filter
def usd(value: Any) -> SafeString | str:
    if value is None or value == "":
        return "—"
    try:
        exact = money(value if isinstance(value, Decimal) else str(value))
    except (InvalidOperation, TypeError, ValueError):
        return "—"
    return format_html(
        '<span class="money" title="{} exactly">{}</span>', exact_text(exact), usd_text(exact)
    )
