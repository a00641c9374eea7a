"""``{{ amount|usd }}``: the dashboard's one money format, with the exact amount on hover.

Amounts show at least two decimals and at most six (a request can cost a few millionths of a
dollar), trailing zeros trimmed: ``$10.00``, ``$9.995``, ``$0.000012``, ``-$0.50``. The title
holds the stored value (8 decimals), so ``$9.995`` and ``$10.00`` can never be confused.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from routerhub.money import exact_text, money, usd_text

register = template.Library()


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
