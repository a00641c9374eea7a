"""Response shapes of the management API, as ``TypedDict``s (plain dicts at run time).

Hand-written from API.md and the server's OpenAPI schema; fields a newer server adds pass
through untouched. Money is a decimal string (``"12.345678"``), as on the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypedDict

Scope = Literal["inference", "manage"]
LimitReset = Literal["daily", "weekly", "monthly"]
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Tradeoff = float | Literal["quality", "balanced", "cost"]
Message = dict[str, Any]

UploadProgress = Callable[[int, int], None]
"""Called with ``(bytes_sent, total_bytes)`` while a dataset uploads."""


class KeyOrganization(TypedDict):
    id: int
    slug: str
    name: str


class RateLimit(TypedDict):
    rpm: int | None
    tpm: int | None


class CurrentKey(TypedDict, total=False):
    id: int
    name: str
    prefix: str
    scope: Scope
    role: str
    organization: KeyOrganization
    # ``limit``/``limit_reset``: the key's own setting. ``limit_remaining``/``limit_reset_at``:
    # the tightest window it spends against, its own or an ancestor's (a key made by a key), so
    # a lifetime limit of 5 under a daily parent can show 0.10 left until the parent's day ends.
    limit: str | None
    limit_remaining: str | None
    limit_reset: str | None
    limit_reset_at: str | None
    usage: str | None
    usage_daily: str | None
    usage_weekly: str | None
    usage_monthly: str | None
    expires_at: str | None
    rate_limit: RateLimit


class ApiKeyParent(TypedDict):
    id: int
    prefix: str


class ApiKey(TypedDict, total=False):
    id: int
    name: str
    prefix: str
    scope: Scope
    created_by: str
    created_by_key: ApiKeyParent | None  # the management key that made it; revoked with it
    created_at: str
    last_used_at: str | None
    expires_at: str | None
    revoked_at: str | None
    is_active: bool
    limit: str | None
    limit_reset: str | None
    # None or []: any model; ["(none)"]: no model (a narrowing of its parent left none of its own)
    allowed_models: list[str] | None
    rpm: int | None
    tpm: int | None
    budget_aware: bool  # router requests lean cheaper as the limit window fills
    key: str  # only in the answer to create, exactly once


class Credits(TypedDict, total=False):
    balance: str
    reserved: str
    available: str
    total_purchased: str
    total_used: str
    currency: str


class Checkout(TypedDict, total=False):
    amount: str
    fee: str
    total: str
    currency: str
    checkout_url: str
    session_id: str


class Quote(TypedDict, total=False):
    amount: str
    fee: str
    total: str
    currency: str


class Receipt(TypedDict, total=False):
    id: int
    kind: str
    status: str
    amount: str
    fee: str
    total: str
    currency: str
    session_id: str
    receipt_url: str | None
    failure_message: str
    created_at: str
    paid_at: str | None


class AutoTopup(TypedDict):
    enabled: bool
    threshold: str | None
    amount: str | None


class LedgerEntry(TypedDict, total=False):
    id: int
    kind: str
    amount: str
    balance_after: str
    description: str
    reference: str
    created_at: str


class Generation(TypedDict, total=False):
    id: str
    key_id: int | None
    model: str
    requested_model: str
    provider: str
    router: str | None
    router_version: int | None
    task_hint: dict[str, str | None] | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost: str
    latency_ms: int | None
    ttft_ms: int | None
    status: str
    error_type: str
    streamed: bool
    is_byok: bool
    flags: list[str]
    created_at: str


class UsageGroup(TypedDict):
    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cache_write_tokens: int
    cost: str


class Usage(TypedDict):
    group_by: str
    results: list[UsageGroup]


class ProviderKey(TypedDict, total=False):
    id: int
    provider: str
    name: str
    base_url: str
    last4: str
    created_at: str


class DatasetModel(TypedDict, total=False):
    id: str
    mean_score: float | None
    mean_cost: float | None


class DatasetError(TypedDict, total=False):
    row: int | None
    column: str | None
    message: str


class Dataset(TypedDict, total=False):
    id: int
    name: str
    original_filename: str
    size_bytes: int
    format: str
    columns: Any
    maximize: bool
    status: Literal["validating", "ready", "invalid"]
    rows: int | None
    models: list[DatasetModel]
    has_costs: bool
    errors: list[DatasetError]
    warnings: list[Any]
    created_at: str
    validated_at: str | None


class Router(TypedDict, total=False):
    slug: str
    name: str
    candidates: list[str]
    default_tradeoff: float
    auto_activate: bool
    active_version: int | None
    activated_at: str | None
    created_at: str


class RouterLifecycle(TypedDict, total=False):
    """A router's experiment settings (shadow or A/B challenger, exploration, promotion rule)."""

    active_version: int | None
    shadow_version: int | None
    shadow_share: float
    challenger_version: int | None
    challenger_share: float
    exploration_rate: float
    promotion: str  # "never" | "if_better"
    promotion_min_decisions: int


class Experiment(TypedDict, total=False):
    """The live report of a router's shadow or A/B experiment (estimates with 95% intervals)."""

    router: str
    experiment: str | None  # "shadow" | "ab" | None
    active_version: int | None
    candidate_version: int
    method: str  # "doubly_robust" | "on_policy"
    decisions_logged: int
    decisions_with_feedback: int
    versions: list[dict[str, Any]]
    difference: dict[str, Any]
    verdict: dict[str, Any]


class RouterEvent(TypedDict, total=False):
    """One entry of a router's audit log."""

    id: int
    kind: str
    actor: str
    from_version: int | None
    to_version: int | None
    evidence: dict[str, Any]
    created_at: str


class RouterVersion(TypedDict, total=False):
    number: int
    dataset: int | None
    candidates: list[str]
    checksum: str
    metrics: Any
    active: bool
    created_at: str


class DriftCheck(TypedDict, total=False):
    checked_at: str
    version: int
    score: float  # mean population stability index of the live prompts' features
    threshold: float
    samples: int
    above_threshold: bool
    alerted: bool  # the check that started a drift episode (webhook and email sent)


class TrainingRun(TypedDict, total=False):
    id: int
    router: str
    dataset: int | None
    status: RunStatus
    stage: str
    progress: float
    error: str
    version: int | None
    metrics: dict[str, Any]
    attempts: int
    options: Any
    created_at: str
    started_at: str | None
    heartbeat_at: str | None
    finished_at: str | None


class FeedbackRetrain(TypedDict):
    id: int
    status: str
    dataset: int
    feedback_rows: int
    warnings: list[str]


class RankedModel(TypedDict, total=False):
    model: str
    score: float | None
    expected_cost: float | None
    bias: float  # the feedback calibration added to ``score`` (present once there is one)


class RoutingBudget(TypedDict, total=False):
    """``routing.budget`` of a budget-aware key's router request."""

    window: str | None
    window_start: str | None
    spent: str  # spent plus held in the window, USD (absent for an ancestor's window)
    limit: str
    # "key": the key's own window; "ancestor": a key's this key was made from (no spent/limit).
    # Not the 403's ``metadata.limited_by``, which names the refusing ancestor's prefix.
    window_of: Literal["ancestor", "key"]
    share: float
    requested_tradeoff: float
    effective_tradeoff: float


class Calibration(TypedDict, total=False):
    """RouteLLM's ``calibrate_threshold``: the threshold that sends ``strong_share`` of the
    router's data to its strong model, and the model name that routes with it."""

    threshold: float
    model: str  # "router-<slug>-<threshold>"
    share_model: str  # "router-<slug>-<P>%": the share, recalibrated for each new version
    strong_share: float
    achieved_share: float
    strong_model: str
    weak_model: str
    prompts: int
    version: int


class Selection(TypedDict, total=False):
    chosen: str
    version: int | None
    ranked: list[RankedModel]
    latency_ms: float
    strategy: str


class Feedback(TypedDict, total=False):
    generation_id: str
    score: float
    comment: str


Report = dict[str, Any]
"""The evaluation report: ``models``, ``oracle``, ``random``, ``curve`` and, by candidate
count, ``apgr``/``cpt50``/``cpt80`` or ``aiq``/``cost_at_best_single_quality``."""

RunProgress = Callable[[TrainingRun], None]
"""Called with the training run each time its status, stage or progress changes."""
