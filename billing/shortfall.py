"""A charge the balance could not cover (``billing.settlement._charges`` took it down to a
zero balance): the usage record shows what was actually charged, flagged ``shortfall``, and a
pipeline's child records are cut to keep summing to it. Runs inside the settlement's
transaction."""

from __future__ import annotations

import logging
from decimal import Decimal

from billing.drafts import UsageDraft
from billing.models import UsageFlag, UsageRecord, UsageStep
from billing.rollups import usage_rollup_adjust
from routerhub.money import ZERO, money, money_str

logger = logging.getLogger("billing.settlement")


def capped_costs_record(drafts: list[UsageDraft], charged: dict[str, Decimal]) -> None:
    """When the balance could not cover a cost, the usage record shows what was actually
    charged and is flagged ``shortfall``: the difference is lost revenue someone must see."""
    for draft in drafts:
        paid = charged.get(draft.generation_id, ZERO)
        if paid == money(draft.cost):
            continue
        logger.error(
            "%s costs %s but only %s was left in the balance; charged that (shortfall %s)",
            draft.generation_id,
            money_str(draft.cost),
            money_str(paid),
            money_str(money(draft.cost) - paid),
        )
        draft.flag(UsageFlag.SHORTFALL)
        UsageRecord.objects.filter(  # created_at: only its month's partition is searched
            generation_id=draft.generation_id, created_at=draft.created_at
        ).update(cost=paid, flags=draft.flags)
        _steps_cut_to(draft, paid)
        usage_rollup_adjust(draft, paid - money(draft.cost))


def _steps_cut_to(draft: UsageDraft, paid: Decimal) -> None:
    """A capped pipeline charge: its child records keep summing to it. What was paid goes to
    the calls in the order they are numbered; the shortfall comes off the last ones."""
    left = paid
    for step in sorted(draft.steps, key=lambda s: int(s["step"])):
        cost = money(Decimal(step["cost"]))
        kept = min(cost, left)
        left -= kept
        if kept != cost:
            UsageStep.objects.filter(generation_id=draft.generation_id, step=step["step"]).update(
                cost=kept
            )
