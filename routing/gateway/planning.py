"""Which endpoints may serve a request, and in which order: the fallback chain.

A plan is an ordered list of candidates (endpoint + credential). Explicit models come from
``model`` then ``models``; each model's endpoints are filtered by the request's needs (tools,
images, JSON schema, ``require_parameters``), the key's allowed models, ``provider`` preferences
and available credentials, then ordered by ``provider.order`` / ``sort`` / price (the preferences
are read and applied by ``routing.gateway.provider_preferences``). A router
(``router/<slug>``, ``router/auto``) ranks its candidates for the prompt (``routing.routers``):
the ranking becomes the model list, and its decision is the response's ``routing`` object.
"""

from __future__ import annotations

from dataclasses import dataclass

from accounts.keys import AuthenticatedKey
from routerhub.errors import (
    NOT_RETRYABLE,
    ApiError,
    BadRequest,
    ContextLengthExceeded,
    NoProviderAvailable,
    NotFound,
)
from routing.budget import key_budget
from routing.gateway.catalog_cache import CatalogSnapshot, EndpointInfo, ModelInfo
from routing.gateway.credentials import OwnKey, byok_keys, platform_key
from routing.gateway.needs import GAP_HINTS, Needs, capability_gap
from routing.gateway.provider_preferences import (
    endpoints_ordered,
    preferences_read,
    provider_keys,
    providers_named,
    within_max_price,
)
from routing.gateway.request_shape import platform_refusal, tier_refusal
from routing.gateway.token_bounds import prompt_token_floor
from routing.providers.base import JSON
from routing.routellm import routellm_decide_async, routellm_model_parse
from routing.router_policy import decision_explore
from routing.router_request import MAX_MODELS, model_list_check, models_allowed_check
from routing.routers import (
    PLATFORM_ROUTER_SLUG,
    RouterDecision,
    messages_prompt,
    router_candidates_allowed,
    router_decide_async,
    router_options,
    router_row_async,
    router_task,
)

# Why endpoints were left out that only the request's own provider preferences decided.
_EXCLUDED_BY_PREFERENCES = "excluded by provider.only/provider.ignore"
_ABOVE_MAX_PRICE = "above provider.max_price"
_NOT_IN_ORDER = "not in provider.order, and provider.allow_fallbacks is false"
_PREFERENCE_REASONS = {_EXCLUDED_BY_PREFERENCES, _ABOVE_MAX_PRICE, _NOT_IN_ORDER}


@dataclass(frozen=True, slots=True)
class Candidate:
    endpoint: EndpointInfo
    api_key: str | None
    is_byok: bool
    base_url: str = ""  # the organization's own host for an OpenAI-compatible provider


@dataclass
class Plan:
    requested_model: str
    candidates: list[Candidate]
    router: str = ""
    router_version: int | None = None
    router_id: int | None = None
    routing: JSON | None = None  # the router's decision, returned to the client as-is
    decision: RouterDecision | None = None  # what its decision log entry is made of


@dataclass(slots=True)
class _PromptFit:
    """Whether the prompt and ``max_tokens`` fit an endpoint's context window. The upper bound
    (``prompt_token_bound``, the hold's) settles it in one comparison when it fits; only when it
    does not is the lower bound counted (once) and the endpoint refused if even that overflows:
    a prompt that may fit is never refused, the provider decides."""

    body: JSON
    bound: int
    max_tokens: int  # what the client asked for (0: none; the prompt alone must fit)
    floor: int = -1

    def output(self, endpoint: EndpointInfo) -> int:
        return min(self.max_tokens, endpoint.max_output)

    def overflows(self, endpoint: EndpointInfo) -> bool:
        window, output = endpoint.context_length, self.output(endpoint)
        if not window or self.bound + output <= window:
            return False
        if self.floor < 0:
            self.floor = prompt_token_floor(self.body)
        return self.floor + output > window


def _model_ids(body: JSON) -> list[str]:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest("model must be a string.", param="model")
    extra = body.get("models") or []
    model_list_check(extra, "models", MAX_MODELS)
    if not isinstance(extra, list) or not all(isinstance(m, str) for m in extra):
        raise BadRequest("models must be a list of model ids.", param="models")
    # dict.fromkeys: a linear dedup (a list's ``in`` made a long ``models`` list quadratic).
    ids = [c for c in dict.fromkeys([model, *extra]) if c]
    if not ids:
        raise BadRequest("model is required.", param="model")
    return ids


async def _route(
    model_id: str, body: JSON, key: AuthenticatedKey, catalog: CatalogSnapshot
) -> RouterDecision:
    """Rank a router's candidates for this prompt (only the request's ``models`` when it lists
    them, OpenRouter-style); the ranking becomes the fallback chain."""
    tradeoff, candidates, candidates_param = router_options(body)
    decision = await router_decide_async(
        organization_id=key.organization_id,
        model_id=model_id,
        prompt=messages_prompt(body["messages"]),
        tradeoff=tradeoff,
        candidates=candidates,
        catalog=catalog,
        budget=key_budget(key),
        candidates_param=candidates_param,
        task=router_task(body),
    )
    servable = [m for m in decision.models if m in catalog.models]
    if not servable:
        raise NoProviderAvailable(
            f"None of {model_id}'s candidates ({', '.join(decision.models)}) is a catalog model "
            "RouterHub can call; name the router's candidates with catalog ids (GET /v1/models).",
            metadata={"candidates": decision.models},
            headers=dict(NOT_RETRYABLE),  # retrying changes nothing until the router is changed
        )
    return decision


def model_names(model_id: str) -> set[str]:
    """The names a key's ``allowed_models`` may give this model by: RouteLLM's
    ``router-<slug>-<threshold>`` (or ``-<P>%``) is also ``router/<slug>``."""
    routellm = routellm_model_parse(model_id)
    return {model_id} if routellm is None else {model_id, f"router/{routellm.slug}"}


async def _named_allowed(
    allowed: set[str], body: JSON, model_ids: list[str], key: AuthenticatedKey
) -> None:
    """A key's ``allowed_models`` hold for every model the request names: ``model``, each
    ``models`` entry (fallbacks, or a router's candidates) and ``router.candidates``. A router
    the key may use picks among its own candidates, and the request may narrow it to some of
    them (that grants nothing it could not pick unasked); any other must be allowed itself."""
    options = body.get("router")
    candidates = options.get("candidates") if isinstance(options, dict) else None
    named = [("model" if m == body.get("model") else "models", m) for m in model_ids]
    if isinstance(candidates, list):
        named += [("router.candidates", c) for c in candidates if isinstance(c, str)]
    own: frozenset[str] = frozenset()
    router = model_ids[0]
    if router.startswith("router/") and len(named) > 1:
        slug = router.removeprefix("router/")
        owner = None if slug == PLATFORM_ROUTER_SLUG else key.organization_id
        own = router_candidates_allowed(allowed, router, await router_row_async(owner, slug))
    models_allowed_check(allowed, named, model_names, router_candidates=own)


async def _decision(
    model_id: str, body: JSON, key: AuthenticatedKey, catalog: CatalogSnapshot
) -> RouterDecision | None:
    """The router's decision for ``router/<slug>`` or RouteLLM's ``router-<slug>-<threshold>``."""
    routellm = routellm_model_parse(model_id)
    if routellm is not None:
        return await routellm_decide_async(
            organization_id=key.organization_id,
            model_id=model_id,
            name=routellm,
            prompt=messages_prompt(body["messages"]),
        )
    if model_id.startswith("router/"):
        return await _route(model_id, body, key, catalog)
    return None


def _kind_check(model: ModelInfo, needs: Needs) -> None:
    if model.is_embedding and not needs.embeddings:
        raise BadRequest(
            f"'{model.id}' is an embedding model: call POST /v1/embeddings with it.",
            param="model",
            metadata={"model": model.id},
        )
    if needs.embeddings and not model.is_embedding:
        raise BadRequest(
            f"'{model.id}' is not an embedding model; GET /v1/models lists those "
            "whose capabilities include embeddings.",
            param="model",
            metadata={"model": model.id},
        )


async def plan_request(
    *, body: JSON, key: AuthenticatedKey, catalog: CatalogSnapshot, needs: Needs, prompt_bound: int
) -> Plan:
    """The ordered candidates for this request, or the error that explains why there are none.
    ``prompt_bound`` is ``prompt_token_bound(body)``: endpoints whose context window cannot hold
    the prompt and ``max_tokens`` are left out (``_PromptFit``)."""
    model_ids = _model_ids(body)
    allowed = set(key.allowed_models)
    if allowed:
        await _named_allowed(allowed, body, model_ids, key)
    decision = await _decision(model_ids[0], body, key, catalog)
    if decision is not None:
        routed = [m for m in decision.models if m in catalog.models]
        if allowed:
            allowed |= set(routed)  # a key allowed a router may use what it picks
        model_ids = list(dict.fromkeys(routed + model_ids[1:]))
    elif "router" in body:
        raise BadRequest("router options only apply to model 'router/<slug>'.", param="router")
    for model_id in model_ids:
        if model_id not in catalog.models:
            raise NotFound(
                f"Unknown model '{model_id}'; GET /v1/models lists them.",
                param="model",
                metadata={"model": model_id},
            )
        _kind_check(catalog.models[model_id], needs)
    fit = _PromptFit(body, prompt_bound, _requested_output(body))
    sieve = _Sieve(body, needs, fit, [catalog.models[m] for m in model_ids])
    byok = await byok_keys(key.organization_id)
    for model_id in model_ids:
        if not allowed or model_id in allowed:
            sieve.add_model(catalog.models[model_id], byok)
    if not sieve.candidates:
        raise sieve.why_none(model_ids)
    if decision is None:
        return Plan(requested_model=model_ids[0], candidates=sieve.candidates)
    # Rank only what can be called here (credentials, capabilities, preferences), so
    # routing.chosen is the model called first, not one skipped for want of a key.
    decision = decision.restricted_to({c.endpoint.model_id for c in sieve.candidates})
    decision = decision_explore(decision)  # a router exploring may serve another candidate
    rank = {model: i for i, model in enumerate(decision.models)}
    return Plan(
        requested_model=decision.router,
        candidates=sorted(sieve.candidates, key=lambda c: rank.get(c.endpoint.model_id, len(rank))),
        router=decision.router,
        router_version=decision.version,
        router_id=decision.router_id,
        routing=decision.as_routing(),
        decision=decision,
    )


def _requested_output(body: JSON) -> int:
    return int(body.get("max_completion_tokens") or body.get("max_tokens") or 0)


class _Sieve:
    """The endpoints of the requested models that can serve this request, in the preferences'
    order, with the reasons the others were left out (the error when none is left)."""

    def __init__(self, body: JSON, needs: Needs, fit: _PromptFit, models: list[ModelInfo]) -> None:
        self.prefs = preferences_read(body)
        self.needs, self.fit = needs, fit
        slugs = {e.provider_slug.lower() for model in models for e in model.endpoints}
        only = self.prefs.get("only")  # naming nothing known, it leaves nothing
        self.only = set(providers_named(only, slugs)) if only else None
        self.ignore = set(providers_named(self.prefs.get("ignore"), slugs))
        self.order = providers_named(self.prefs.get("order"), slugs)
        self.require_parameters = bool(self.prefs.get("require_parameters"))
        # What only an organization's own key may send (a tier or tool the catalog does not
        # price): the platform's endpoints are left out, and this is the 400 if none is left.
        # Embeddings send neither (``providers.embeddings``): they refuse a tier as chat does (a
        # standard one is served, not sent, and named in x-routerhub-dropped), not chat's tools.
        self.body = body
        self.platform_refused: tuple[str, str] | None = None
        self.candidates: list[Candidate] = []
        self.gap: str | None = None
        self.too_small: EndpointInfo | None = None  # the largest window the prompt overflowed
        self.reasons: set[str] = set()

    def add_model(self, model: ModelInfo, byok: dict[str, OwnKey]) -> None:
        eligible = [e for e in model.endpoints if self._eligible(e)]
        ordered = endpoints_ordered(eligible, self.prefs, self.order, self.fit.bound)
        if eligible and not ordered:
            self.reasons.add(_NOT_IN_ORDER)
        for endpoint in ordered:
            own, style = byok.get(endpoint.provider_slug), endpoint.api_style
            if own:
                base_url = own.base_url if style == "openai" else ""
                self.candidates.append(Candidate(endpoint, own.secret, True, base_url))
                continue
            refusal = (tier_refusal if self.needs.embeddings else platform_refusal)(
                self.body, style
            )
            if refusal is not None:
                self.platform_refused = refusal
                continue
            platform = platform_key(endpoint.api_key_env)
            if platform is None:
                self.reasons.add(f"no credentials for provider '{endpoint.provider_slug}'")
                continue
            self.candidates.append(Candidate(endpoint, platform or None, False))

    def _eligible(self, endpoint: EndpointInfo) -> bool:
        if (self.only is not None or self.ignore) and self._excluded(provider_keys(endpoint)):
            self.reasons.add(_EXCLUDED_BY_PREFERENCES)
        elif not within_max_price(endpoint, self.prefs.get("max_price"), self.fit.bound):
            self.reasons.add(_ABOVE_MAX_PRICE)
        elif (missing := capability_gap(endpoint, self.needs, self.require_parameters)) is not None:
            self.gap = self.gap or missing
        elif self.fit.overflows(endpoint):
            if self.too_small is None or endpoint.context_length > self.too_small.context_length:
                self.too_small = endpoint
        else:
            return True
        return False

    def _excluded(self, names: frozenset[str]) -> bool:
        return bool((self.only is not None and not names & self.only) or names & self.ignore)

    def why_none(self, model_ids: list[str]) -> ApiError:
        if self.gap is not None:
            # Some endpoint the preferences allow exists, but none can honour the request as given.
            return BadRequest(
                f"No endpoint of the requested model(s) supports '{self.gap}' as requested"
                f"{GAP_HINTS.get(self.gap, '.')}",
                param=self.gap,
            )
        if self.too_small is not None:
            return self._too_long(self.too_small)
        if self.platform_refused is not None:
            message, param = self.platform_refused
            return BadRequest(message, param=param, metadata={"models": model_ids})
        reasons = self.reasons
        described = "; ".join(sorted(reasons or {"no enabled endpoint"}))
        metadata = {"models": model_ids, "reasons": sorted(reasons)}
        if reasons and reasons <= _PREFERENCE_REASONS:
            # The request's own preferences leave nothing: sending it again cannot help.
            return BadRequest(
                f"No endpoint of the requested model(s) is within the provider preferences: "
                f"{described}; loosen provider.only, provider.ignore, provider.max_price or "
                "provider.order.",
                param="provider",
                metadata=metadata,
            )
        # No credentials, no enabled endpoint: retrying changes nothing until an operator acts.
        return NoProviderAvailable(
            f"No provider can serve this request: {described}.",
            metadata=metadata,
            headers=dict(NOT_RETRYABLE),
        )

    def _too_long(self, endpoint: EndpointInfo) -> ApiError:
        fit, output = self.fit, self.fit.output(endpoint)
        return ContextLengthExceeded(
            f"This request needs at least {fit.floor + output} tokens (a prompt of at least "
            f"{fit.floor} tokens, estimated, plus max_tokens {output}), more than the context "
            f"window of {endpoint.context_length} tokens of {endpoint.model_id}, the largest "
            "among the requested models. Shorten the messages, lower max_tokens or choose a "
            "model with a longer context (GET /v1/models lists context_length).",
            param="messages",
            metadata={
                "model": endpoint.model_id,
                "context_length": endpoint.context_length,
                "prompt_tokens_estimate": fit.floor,
                "max_tokens": output,
            },
        )
