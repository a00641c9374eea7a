"""Budget-aware routing: a key's router requests lean toward cheaper models as its limit window
fills, instead of being refused at the cap (which still holds: every hold is checked).

With ``s`` the share of the window used (spent plus held, ``billing.window_spend``), ``s0`` the
setting ``BUDGET_ROUTING_START`` and ``t`` the requested tradeoff (the router's default when the
request names none)::

    x = clamp((s - s0) / (1 - s0), 0, 1)
    w = x² (3 - 2x)                 # smoothstep: flat at both ends
    effective = t + (1 - t) · w     # t below s0, 1 (cheapest) at the limit

README "Budget-aware routing" tabulates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings

from accounts.keys import AuthenticatedKey
from billing import metering
from routerhub.money import money_str


@dataclass(frozen=True, slots=True)
class KeyBudget:
    """A budget-aware key's limit window, as the gateway saw it when routing."""

    window: str | None  # daily, weekly, monthly; None: the limit never resets
    window_start: str | None  # ISO 8601
    spent: Decimal  # spent plus held
    limit: Decimal
    share: float  # spent / limit, 0..1
    ancestor: bool = False  # the fullest window is an ancestor's (``metering.limit_window``)

    def effective(self, requested: float) -> float:
        return budget_tradeoff(requested, self.share)

    def as_routing(self, requested: float, effective: float) -> dict[str, Any]:
        """The response's ``routing.budget``; ``window_of`` says whose window it is. An
        ancestor's shows its share, not its whole tree's ``limit`` and ``spent`` as such."""
        amounts: dict[str, str | None] = {"window_of": "ancestor"}
        if not self.ancestor:
            amounts = {
                "window_of": "key",
                "spent": money_str(self.spent),
                "limit": money_str(self.limit),
            }
        return {
            "window": self.window,
            "window_start": self.window_start,
            **amounts,
            "share": round(self.share, 4),
            "requested_tradeoff": requested,
            "effective_tradeoff": round(effective, 4),
        }


def budget_tradeoff(requested: float, share: float, start: float | None = None) -> float:
    """The tradeoff a budget-aware request is routed with (module doc's formula)."""
    s0 = settings.BUDGET_ROUTING_START if start is None else start
    if share <= s0:
        return requested
    x = 1.0 if s0 >= 1 else min(1.0, (share - s0) / (1 - s0))
    weight = x * x * (3 - 2 * x)
    return min(1.0, requested + (1 - requested) * weight)


def key_budget(key: AuthenticatedKey) -> KeyBudget | None:
    """A budget-aware key's fullest limit window, its own or an ancestor's, as this process's
    holds last saw it (no I/O); None for a key that did not opt in or has no limit to fill."""
    window = metering.limit_window(key) if key.budget_aware else None
    if window is None:
        return None
    start = window.start.isoformat() if window.start else None
    return KeyBudget(window.reset, start, window.used, window.limit, window.share, window.ancestor)
