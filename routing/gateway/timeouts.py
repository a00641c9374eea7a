"""What a request is charged for the calls it did not get an answer from but a provider bills:
prompts that timed out once sent (``attempts.timed_out``), estimated, and the answers to a list
of prompts discarded with a candidate that failed another (``completions_prompts``), at the usage
reported. ``exchange.bill`` (or the end of ``exchange.exchange_run`` when nothing was billed)
adds them, within what the hold has left.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import TYPE_CHECKING

from billing import metering
from billing.metering import UsageDraft, UsageFlag
from routerhub.money import ZERO, money_str
from routing.gateway.planning import Candidate
from routing.providers.base import JSON, Usage

if TYPE_CHECKING:
    from routing.gateway.exchange import Exchange


@dataclass
class TimedOut:
    """One attempt that timed out with its request at the provider: its trace entry (where
    what it is billed is shown), the candidate that had it, and its prompt's usage estimate.
    Also, not ``estimated``: the answers a candidate gave to a list of prompts, discarded because
    it failed another (``completions_prompts``), with the usage the provider reported."""

    entry: JSON
    candidate: Candidate
    usage: Usage
    estimated: bool = True


def timeouts_charge(ex: Exchange) -> Decimal:
    """Add the prompts of attempts that timed out at a provider that had the request (each at
    its own endpoint's price, estimated) to the draft's cost, and return what was added. They
    take only what the hold has left after the rest of the charge, so estimates never take a
    request past its hold; each is shown in its trace entry (``billed``). Once per request. The
    answers of a list of prompts discarded with a failed candidate are added the same way, at the
    usage the provider reported (``TimedOut.estimated`` false). Each is added to the draft's
    tokens too, whatever the outcome, as far as it was charged (``_usage_charged``): a record's
    tokens explain its cost (before, an estimate beside an answer, a stream or a client leaving
    was in the cost alone; then one the hold left no room for was in the tokens in full)."""
    sent = list(ex.timed_out)
    ex.timed_out.clear()
    draft = ex.draft
    added = ZERO
    charged: list[Usage] = []  # what each was charged for: part of it where the hold ran out
    for timeout in sent:
        child = replace(draft, flags="", steps=[], decision=None)  # priced, never recorded
        endpoint = timeout.candidate.endpoint
        usage, byok = timeout.usage, timeout.candidate.is_byok
        own_host = bool(timeout.candidate.base_url)  # as ``exchange.bill`` prices its answer
        full = metering.price(
            child, endpoint.prices, usage, is_byok=byok, held=ex.reserved, own_host=own_host
        )
        cost = min(full, max(ex.reserved - draft.cost - added, ZERO))
        usage = _usage_charged(usage, cost, full)
        charged.append(usage)
        billed = timeout.entry.setdefault("billed", {"prompt_tokens": 0, "cost": "0"})
        billed["prompt_tokens"] += usage.prompt_tokens
        if not timeout.estimated or usage.completion_tokens:  # hidden reasoning's estimate
            billed["completion_tokens"] = (
                billed.get("completion_tokens", 0) + usage.completion_tokens
            )
        billed["cost"] = money_str(Decimal(billed["cost"]) + cost)
        added += cost
    if any(timeout.estimated for timeout in sent):
        draft.flag(UsageFlag.USAGE_ESTIMATED)
    if sent and not draft.model:  # nothing else was billed: the record is these calls'
        last = sent[-1].candidate
        draft.model, draft.provider = last.endpoint.model_id, last.endpoint.provider_slug
        draft.is_byok = last.is_byok  # as the fee its charge took says
    _tokens_add(draft, charged)
    draft.cost += added
    return added


def _usage_charged(usage: Usage, cost: Decimal, full: Decimal) -> Usage:
    """The part of ``usage`` (priced ``full``) that ``cost`` pays for, where the hold left less
    than its price: each count scaled by ``cost / full``, rounded down (none when the hold had
    nothing left). Its tokens are what the record, its trace and the key's tokens per minute
    count: tokens nobody was charged for are not the request's."""
    if cost >= full:
        return usage
    scaled = replace(usage)
    for name in (f.name for f in fields(Usage) if f.type in ("int", int)):  # counts, not flags
        setattr(scaled, name, int(getattr(usage, name) * cost // full))
    return scaled


def _tokens_add(draft: UsageDraft, usages: list[Usage]) -> None:
    """Add to the draft's tokens those of calls ``timeouts_charge`` adds to its cost."""
    draft.prompt_tokens += sum(u.prompt_tokens for u in usages)
    draft.completion_tokens += sum(u.completion_tokens for u in usages)
    draft.cached_tokens += sum(u.cached_tokens for u in usages)
    draft.reasoning_tokens += sum(u.reasoning_tokens for u in usages)
    draft.cache_write_tokens += sum(u.cache_write_tokens for u in usages)
