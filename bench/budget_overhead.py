"""What budget-aware routing and the feedback calibration add to one router decision.

``python -m bench.budget_overhead`` (needs no services: no I/O is on these paths). Prints the
best of 5 runs, in µs per decision: the routing-object work with and without a budget (reading
the key's window from process memory, the curve, ``routing.budget``). The calibration adds one
array of per-model biases to ``Predictor.rank`` (a few µs) and nothing when a router has none.
"""

from __future__ import annotations

import os
import timeit
from decimal import Decimal
from typing import Any


def _best(fn: Any, n: int) -> float:
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
    import django

    django.setup()
    from django.utils import timezone

    from accounts.keys import AuthenticatedKey
    from billing.window_spend import window_spend_note
    from billing.windows import window_start
    from routing.budget import key_budget
    from routing.routers import RankedChoice, RouterDecision, _with_budget

    key = AuthenticatedKey(id=1, organization_id=1, organization_slug="o", scope="inference",
                           name="k", prefix="p", allowed_models=(), rpm=None, tpm=None,
                           limit=Decimal(5), limit_reset="daily", expires_at=None,
                           budget_aware=True)  # fmt: skip
    window_spend_note(1, window_start("daily", timezone.now()), Decimal("3.7"))
    ranked = [RankedChoice("a", 0.5, 0.1), RankedChoice("b", 0.4, 0.01)]
    decision = RouterDecision("router/x", 1, ranked, 1.0, "trained")
    print(f"routing object, not budget-aware: "
          f"{_best(lambda: _with_budget(lambda t: decision, 0.3, None).as_routing(), 20000):.1f} µs")  # fmt: skip
    print(f"routing object, budget-aware:     "
          f"{_best(lambda: _with_budget(lambda t: decision, 0.3, key_budget(key)).as_routing(), 20000):.1f} µs")  # fmt: skip


if __name__ == "__main__":
    main()
