"""A finished request's usage draft: what the gateway hands to billing, and the bytes the usage
outbox carries from a gateway worker to a settler (``draft_encode`` → ``draft_decode``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from django.utils import timezone

from billing.models import UsageFlag
from routerhub.money import ZERO, money_str

logger = logging.getLogger(__name__)


@dataclass
class UsageDraft:
    """Everything the gateway knows about a finished request; JSON-serialisable for the outbox."""

    generation_id: str
    organization_id: int
    key_id: int | None
    status: str
    cost: Decimal = ZERO
    model: str = ""
    requested_model: str = ""
    provider: str = ""
    router: str = ""
    router_version: int | None = None
    router_id: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    # Prompt tokens written to the provider's prompt cache (Anthropic's cache_creation; part of
    # ``prompt_tokens``, priced at the write multipliers).
    cache_write_tokens: int = 0
    latency_ms: int | None = None
    ttft_ms: int | None = None
    error_type: str = ""
    streamed: bool = False
    is_byok: bool = False
    prompt: str = ""
    # Kept with the prompt, only for organizations that opted in (``Organization.prompt_logging``).
    response: str = ""
    # JSON text: the routing decision and the fallbacks tried (the generation page shows them).
    trace: str = ""
    flags: str = ""  # comma-separated ``UsageFlag`` values
    # A request of several provider calls (a pipeline): one ``STEP_FIELDS`` dict per call, kept
    # as ``UsageStep`` children of this draft's record; ``cost`` is then their sum.
    steps: list[dict[str, Any]] = field(default_factory=list)
    # A routed request's decision log entry (``DECISION_FIELDS``), kept as its ``UsageDecision``.
    decision: dict[str, Any] | None = None
    created_at: datetime = field(default_factory=timezone.now)

    def flag(self, flag: UsageFlag) -> None:
        if flag not in self.flags.split(","):
            self.flags = f"{self.flags},{flag}" if self.flags else str(flag)

    def to_json(self) -> dict[str, Any]:
        # Field by field: ``dataclasses.asdict`` deep-copies every value and was a measurable
        # share of the gateway's per-request CPU.
        data = {name: getattr(self, name) for name in _DRAFT_FIELDS}
        data["cost"] = money_str(self.cost)
        data["created_at"] = self.created_at.isoformat()
        if not self.steps:
            del data["steps"]  # a one-call request's bytes stay those of the previous release
        if self.decision is None:
            del data["decision"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsageDraft:
        """A draft from ``to_json``'s dict, of this release or a neighbour (rolling deploys):
        fields this release does not know are ignored, fields it added take their defaults.
        A draft without its identity, cost or time raises (``TypeError``, ``KeyError``): every
        release wrote them, and a default cost would charge nothing."""
        if _DRAFT_FIELD_SET.issuperset(data):  # this release's drafts: a plain copy (settler CPU)
            known = dict(data)
        else:
            known = {name: value for name, value in data.items() if name in _DRAFT_FIELD_SET}
            logger.debug(
                "usage draft %s: ignoring fields this release does not know: %s",
                data.get("generation_id"),
                sorted(set(data) - _DRAFT_FIELD_SET),
            )
        known["cost"] = Decimal(known["cost"])
        known["created_at"] = datetime.fromisoformat(known["created_at"])
        if known.get("steps"):
            known["steps"] = [STEP_DEFAULTS | step for step in known["steps"]]
        if known.get("decision") is not None:
            known["decision"] = DECISION_DEFAULTS | known["decision"]
        return cls(**known)


STEP_FIELDS = (
    "step",
    "model",
    "provider",
    "status",
    "gate",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "latency_ms",
)
# What a step or decision written by an earlier release may lack (``from_json`` fills it in);
# the rest identify the call or the decision and were there from the start.
STEP_DEFAULTS: dict[str, Any] = {
    "model": "",
    "provider": "",
    "gate": "",
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "cost": "0",
    "latency_ms": None,
}
_DRAFT_FIELDS = tuple(f.name for f in fields(UsageDraft))
_DRAFT_FIELD_SET = frozenset(_DRAFT_FIELDS)
DECISION_FIELDS = (
    "router_id",
    "served_version",
    "served_model",
    "greedy_model",
    "propensity",
    "shadow_version",
    "shadow_model",
    "predicted",
    "task_hint",
)
DECISION_DEFAULTS: dict[str, Any] = {
    "shadow_version": None,
    "shadow_model": "",
    "predicted": {},
    "task_hint": "",
}
DECISION_COLUMNS = ("generation_id", *DECISION_FIELDS, "created_at")


def decision_rows(drafts: list[UsageDraft]) -> list[tuple[Any, ...]]:
    """The ``UsageDecision`` rows of the drafts that carry a decision, in ``DECISION_COLUMNS``
    order (``predicted`` as JSON text)."""
    return [
        (
            d.generation_id,
            *(orjson.dumps(v).decode() if n == "predicted" else v
              for n in DECISION_FIELDS for v in (d.decision[n],)),
            d.created_at,
        )
        for d in drafts
        if d.decision is not None
    ]  # fmt: skip


def draft_encode(draft: UsageDraft) -> bytes:
    """The draft as the bytes the usage outbox carries to a settler (``draft_decode``)."""
    return orjson.dumps(draft.to_json())


def draft_decode(payload: bytes) -> UsageDraft:
    """A draft from ``draft_encode``'s bytes; raises what ``UNSETTLABLE`` names if it is not one."""
    return UsageDraft.from_json(orjson.loads(payload))
