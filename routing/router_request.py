"""A router request's own options: its tradeoff, its candidates and the prompt text it is
ranked on (``routing.routers`` decides with them)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from routerhub.domain import InvalidInput
from routerhub.errors import Forbidden
from routerhub.text import has_control
from training import serving

TRADEOFF_NAMES = {"quality": 0.0, "balanced": 0.5, "cost": 1.0}
MAX_TASK_CHARS = 200  # a task hint's length (training/learner/task_hint.py stores no longer)
PROMPT_CHARS = 16_000  # featurize the last 16k characters: enough signal, bounded work
# The most models one request may name: ``models`` (OpenRouter's fallback list; OpenRouter itself
# takes a handful) and a router's ``candidates`` (a trained router's set, or the catalog's for
# ``router/auto``). Past them, a 400: each name is looked up, and long lists cost event-loop time.
MAX_MODELS = 32
MAX_CANDIDATES = 256


def model_list_check(value: Any, param: str, most: int) -> None:
    """``InvalidInput`` (400, ``param``) when ``value`` is a list of more than ``most`` items."""
    if isinstance(value, list) and len(value) > most:
        raise InvalidInput(
            f"{param} may name at most {most} models; this request names {len(value)}.",
            param=param,
        )


def tradeoff_parse(value: Any, *, param: str = "router.tradeoff") -> float | None:
    """A number in 0..1 or one of quality, balanced, cost; ``None`` when absent."""
    if value is None:
        return None
    if isinstance(value, str) and value in TRADEOFF_NAMES:
        return TRADEOFF_NAMES[value]
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise InvalidInput(
        f"{param} must be a number from 0 (best quality) to 1 (cheapest), "
        "or one of 'quality', 'balanced', 'cost'.",
        param=param,
    )


def router_options(body: dict[str, Any]) -> tuple[float | None, list[str] | None, str]:
    """The request's ``router`` extension ``{tradeoff, candidates}`` and the parameter that named
    the candidates: ``router.candidates``, or else OpenRouter's ``models`` list beside a router
    model (the router ranks among those only; giving both is refused)."""
    options = body.get("router") or {}
    if not isinstance(options, dict):
        raise InvalidInput(
            "router must be an object: {tradeoff, candidates, task}.", param="router"
        )
    candidates = options.get("candidates")
    model_list_check(candidates, "router.candidates", MAX_CANDIDATES)
    if candidates is not None and (
        not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates)
    ):
        raise InvalidInput(
            "router.candidates must be a list of model ids.", param="router.candidates"
        )
    tradeoff = tradeoff_parse(options.get("tradeoff"))
    models = body.get("models")
    if not models:
        return tradeoff, candidates, "router.candidates"
    if candidates is not None:
        raise InvalidInput(
            "Give a router's candidates once: models (the router ranks among them) or "
            "router.candidates, not both.",
            param="models",
        )
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise InvalidInput("models must be a list of model ids.", param="models")
    return tradeoff, list(dict.fromkeys(models)), "models"


def models_allowed_check(
    allowed_models: Collection[str],
    named: Iterable[tuple[str, str]],
    names: Callable[[str], set[str]] = lambda model_id: {model_id},
    *,
    router_candidates: Collection[str] = (),
) -> None:
    """A 403 naming the first model a request names (``(param, model_id)`` pairs) that the key's
    ``allowed_models`` do not allow; nothing when the key is unrestricted. ``names``: the names
    a model may be allowed by (a RouteLLM name is also its ``router/<slug>``).
    ``router_candidates``: what a router the key may use could pick on its own
    (``routing.routers.router_candidates_allowed``); naming a subset of them narrows the router
    and grants nothing new, so they pass. Anything else must be allowed itself."""
    allowed = set(allowed_models)
    if not allowed:
        return
    for param, model_id in named:
        if not allowed & names(model_id) and model_id not in router_candidates:
            where = "." if param == "model" else f" (named in {param})."
            raise Forbidden(
                f"This key may not use the model '{model_id}'{where}",
                param=param,
                metadata={"model": model_id, "allowed_models": sorted(allowed)},
            )


def router_task(body: dict[str, Any]) -> str | None:
    """The request's task hint, ``router: {"task": "mmlu/high_school_mathematics"}``
    (``task_label``); None when absent."""
    options = body.get("router")
    task = options.get("task") if isinstance(options, dict) else None
    return None if task is None else task_label(task, "router.task")


def task_label(task: Any, param: str) -> str:
    """A request's task (chat's ``router.task``, select's ``task``: one rule for both) without
    its surrounding whitespace: a string, not blank, of at most ``MAX_TASK_CHARS`` characters,
    with no control character, lone surrogate, bidi override or other invisible format
    character (``routerhub.text.has_control``, as names); else ``InvalidInput`` naming ``param``."""
    label = task.strip() if isinstance(task, str) else None
    if label is None or not label or len(label) > MAX_TASK_CHARS or has_control(label):
        raise InvalidInput(
            f"{param} must be a task label (a non-blank string of at most {MAX_TASK_CHARS} "
            "characters, no control characters or bidi overrides), "
            "e.g. 'mmlu/high_school_mathematics'.",
            param=param,
        )
    return label


def messages_prompt(messages: Any) -> str:
    """The text a router featurizes: the same joining as training uses for ``messages``."""
    try:
        text = serving.prompt_text(messages, "messages")
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"messages cannot be read: {exc}.", param="messages") from None
    return text[-PROMPT_CHARS:]


def select_prompt(body: dict[str, Any]) -> str:
    """The text a select request is ranked on: its ``prompt`` or its ``messages``' text, trimmed
    alike to the last ``PROMPT_CHARS`` characters (a longer prompt is accepted, as long messages
    are; the body limit bounds both)."""
    prompt = body.get("prompt")
    return prompt[-PROMPT_CHARS:] if prompt else messages_prompt(body["messages"])
