"""OpenRouter's ``reasoning`` object (``{effort, max_tokens, exclude, enabled}``) in each
provider's terms: OpenAI's ``reasoning_effort``, Anthropic's ``thinking`` budget and Gemini's
``thinkingConfig``. A request's own provider-native field (``reasoning_effort``, ``thinking``)
wins over it. Validated at ingress (``routing.gateway.openrouter_request``)."""

from __future__ import annotations

from routing.providers.base import JSON

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
# Share of max_tokens a thinking budget gets for an effort (OpenRouter's documented ratios).
_BUDGET_SHARE = {"minimal": 0.1, "low": 0.2, "medium": 0.5, "high": 0.8, "xhigh": 0.95}
_MIN_BUDGET = 1024  # Anthropic's floor for thinking.budget_tokens


def _reasoning(request: JSON) -> JSON | None:
    reasoning = request.get("reasoning")
    if not isinstance(reasoning, dict) or reasoning.get("enabled") is False:
        return None
    if reasoning.get("effort") == "none":
        return None
    return reasoning


def reasoning_effort(request: JSON) -> str | None:
    """OpenAI's ``reasoning_effort`` for the request's ``reasoning`` (``medium`` when it only
    enables reasoning or gives a budget)."""
    reasoning = _reasoning(request)
    if reasoning is None:
        return None
    effort = reasoning.get("effort")
    return effort if isinstance(effort, str) else "medium"


def thinking_budget(request: JSON, max_tokens: int) -> int | None:
    """A thinking budget below ``max_tokens`` (Anthropic's rule) and at least Anthropic's floor,
    or None when reasoning is off or ``max_tokens`` leaves no room for it."""
    reasoning = _reasoning(request)
    if reasoning is None:
        return None
    budget = reasoning.get("max_tokens")
    if not isinstance(budget, int):
        budget = int(max_tokens * _BUDGET_SHARE.get(str(reasoning.get("effort")), 0.5))
    budget = min(max(budget, _MIN_BUDGET), max_tokens - 1)
    return budget if budget >= _MIN_BUDGET else None


def reasoning_excluded(request: JSON) -> bool:
    """``reasoning.exclude``: the model reasons, the answer carries no reasoning text."""
    reasoning = request.get("reasoning")
    return isinstance(reasoning, dict) and reasoning.get("exclude") is True
