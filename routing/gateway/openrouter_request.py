"""OpenRouter's request conventions, turned into RouterHub's before a chat request is planned.

- Model variants: ``:floor`` sorts endpoints by price, ``:nitro`` by throughput, ``:free`` keeps
  only endpoints priced 0, ``:thinking`` turns reasoning on; ``:online`` (web search) is refused
  with a 400, since RouterHub has no web search. A catalog id that itself contains the suffix
  is taken as it is.
- ``provider.sort`` as an object ``{by, partition}``: ``by`` is the sort; ``partition: "none"``
  orders the ``model`` + ``models`` list by each model's best endpoint for ``by`` (RouterHub
  then tries each model's endpoints in turn, so endpoints of different models never interleave).
- An unknown ``model`` (or ``models`` entry) is skipped when another in the list is known: the
  first known model is asked first, as OpenRouter falls back. Beside a router ``model`` the
  ``models`` are its candidates; when none of them is known the request is refused. RouteLLM's
  ``router-<slug>-<threshold>`` is known too: its ``models`` are fallbacks after its pair.
- ``reasoning`` is checked here and translated per provider by the adapters
  (``routing.providers.reasoning``).
- ``openrouter/auto`` (OpenRouter's Auto Router) is RouterHub's platform router ``router/auto``.
- A provider's own name for a model (``gpt-4o``, no author) is the catalog model whose id after
  its author (the text after the first ``/``) is ``gpt-4o`` when exactly one is: SDKs pointed
  here from a provider's own API (Not Diamond's ``create``, langchain's ``ChatOpenAI``) send
  names without the author. The whole name is matched first (``r1:free`` is ``deepseek/r1:free``),
  then the name before a variant (``gpt-4o:floor``). A name several models share is a 404 naming
  them unless another requested model is known; then it is skipped as an unknown one is.
"""

from __future__ import annotations

from typing import Any

from routerhub.errors import BadRequest, NotFound
from routing.gateway.catalog_cache import CatalogSnapshot, EndpointInfo
from routing.gateway.provider_preferences import endpoint_sort_key
from routing.providers.base import JSON
from routing.providers.reasoning import EFFORTS
from routing.routellm import routellm_model_parse
from routing.router_ranking import PLATFORM_ROUTER_SLUG
from routing.router_request import MAX_CANDIDATES, MAX_MODELS, model_list_check

_SORT_VARIANTS = {"floor": "price", "nitro": "throughput"}
_VARIANTS = ("floor", "nitro", "free", "thinking", "online")
_PARTITIONS = ("model", "none")
_AUTO = "openrouter/auto"
PLATFORM_ROUTER = f"router/{PLATFORM_ROUTER_SLUG}"


def openrouter_request(body: JSON, catalog: CatalogSnapshot) -> JSON:
    """``body`` with OpenRouter's conventions resolved (a copy when anything changes)."""
    if "reasoning" in body:
        _reasoning_check(body["reasoning"])
    body = model_names_resolved(body, catalog)
    ids = _requested_ids(body)
    if any(":" in i and i not in catalog.models for i in ids):
        body = _variants_applied(body, ids, catalog)
        ids = _requested_ids(body)
    provider = body.get("provider")
    if isinstance(provider, dict) and isinstance(provider.get("sort"), dict):
        body = _sort_object_applied(body, provider, catalog)
    if len(ids) > 1 and not all(_known(i, catalog) for i in ids):
        body = _known_first(body, ids, catalog)
    return body


def _requested_ids(body: JSON) -> list[str]:
    models = body.get("models")
    extra = models if isinstance(models, list) else []
    return [m for m in [body.get("model"), *extra] if isinstance(m, str)]


def model_names_resolved(body: JSON, catalog: CatalogSnapshot) -> JSON:
    """``body`` with ``openrouter/auto`` and names without their author (``model``,
    ``models``) made catalog ids; the body itself when nothing needs it. A name several catalog
    models share is left as it is (an unknown model, skipped) when another requested model is
    known, and is otherwise a 404 naming the models it may be."""
    model_list_check(body.get("models"), "models", MAX_MODELS)  # before any name is looked up
    options = body.get("router")
    if isinstance(options, dict):
        model_list_check(options.get("candidates"), "router.candidates", MAX_CANDIDATES)
    ids = _requested_ids(body)
    if not any(i not in catalog.models and "/" not in i for i in ids) and _AUTO not in ids:
        return body
    resolved = {i: _name_matches(i, catalog) for i in ids}
    ambiguous = [i for i, (found, _) in resolved.items() if len(found) > 1]
    if ambiguous and not any(len(found) == 1 and _known(found[0], catalog)
                             for found, _ in resolved.values()):  # fmt: skip
        matches = sorted(resolved[ambiguous[0]][0])
        raise NotFound(
            f"Unknown model '{ambiguous[0]}'; it may be any of {', '.join(matches)}: "
            "name one with its author.",
            param="model",
            metadata={"model": ambiguous[0], "matches": matches},
        )

    def name(model_id: object) -> object:
        if not isinstance(model_id, str):
            return model_id
        found, variant = resolved[model_id]
        return f"{found[0]}{variant}" if len(found) == 1 else model_id

    body = dict(body)
    if "model" in body:
        body["model"] = name(body["model"])
    if isinstance(body.get("models"), list):
        body["models"] = [name(m) for m in body["models"]]
    return body


def _known(model_id: str, catalog: CatalogSnapshot) -> bool:
    """A catalog id or a router: ``router/<slug>`` or RouteLLM's ``router-<slug>-<threshold>``."""
    return (
        model_id in catalog.models
        or model_id.startswith("router/")
        or routellm_model_parse(model_id) is not None
    )


def _name_matches(model_id: str, catalog: CatalogSnapshot) -> tuple[list[str], str]:
    """The ids ``model_id`` may name and the ``:variant`` it keeps: itself (a catalog id, one with
    an author, or unknown), the platform router, or the catalog ids whose text after their
    author is the whole name, else the name before a ``:variant``."""
    if model_id == _AUTO:
        return [PLATFORM_ROUTER], ""
    if model_id in catalog.models or "/" in model_id:
        base, colon, variant = model_id.rpartition(":")
        if model_id not in catalog.models and colon and _known(base, catalog):
            return [base], f":{variant}"  # known with its variant: test/gpt:floor
        return [model_id], ""
    whole = [m for m in catalog.models if m.partition("/")[2] == model_id]
    if whole:
        return whole, ""
    name, colon, variant = model_id.partition(":")
    matches = [m for m in catalog.models if m.partition("/")[2] == name]
    return (matches, f"{colon}{variant}") if matches else ([model_id], "")


def _split(model_id: str, catalog: CatalogSnapshot) -> tuple[str, str | None]:
    if model_id in catalog.models or ":" not in model_id:
        return model_id, None
    base, _, variant = model_id.rpartition(":")
    if variant not in _VARIANTS:
        raise BadRequest(
            f"Unknown model variant ':{variant}' in '{model_id}'; RouterHub "
            f"knows :{', :'.join(_VARIANTS[:-1])}.",
            param="model",
        )
    if variant == "online":
        raise BadRequest(
            f"'{model_id}': the :online variant adds web search, which RouterHub "
            f"does not have; call '{base}' without it.",
            param="model",
        )
    return base, variant


def _variants_applied(body: JSON, ids: list[str], catalog: CatalogSnapshot) -> JSON:
    body = dict(body)
    split = [_split(i, catalog) for i in ids]
    if isinstance(body.get("model"), str):
        body["model"] = split[0][0]
        split_models = split[1:]
    else:
        split_models = split
    if isinstance(body.get("models"), list):
        body["models"] = [base for base, _ in split_models]
    if not isinstance(body.get("provider") or {}, dict):
        raise BadRequest("provider must be an object.", param="provider")
    provider = dict(body.get("provider") or {})
    for variant in {v for _, v in split if v is not None}:
        if variant in _SORT_VARIANTS:
            provider.setdefault("sort", _SORT_VARIANTS[variant])
        elif variant == "free":
            provider.setdefault("max_price", {"prompt": 0, "completion": 0})
        elif variant == "thinking" and "reasoning" not in body and "reasoning_effort" not in body:
            body["reasoning"] = {"enabled": True}
    if provider:
        body["provider"] = provider
    return body


def _sort_object_applied(body: JSON, provider: JSON, catalog: CatalogSnapshot) -> JSON:
    sort = provider["sort"]
    by, partition = sort.get("by"), sort.get("partition", "model")
    if partition not in _PARTITIONS or not isinstance(by, str):
        raise BadRequest(
            'provider.sort as an object is {"by": "price"|"latency"|"throughput", '
            '"partition": "model"|"none"}.',
            param="provider.sort",
        )
    body = body | {"provider": provider | {"sort": by}}
    ids = _requested_ids(body)
    if partition == "none" and len(ids) > 1:
        ranked = sorted(ids, key=lambda i: _best(catalog, i, by))
        body["model"], body["models"] = ranked[0], ranked[1:]
    return body


def _best(catalog: CatalogSnapshot, model_id: str, by: str) -> Any:
    """A model's best endpoint's sort key (unknown models and routers last, in their order)."""
    model = catalog.models.get(model_id)
    endpoints: tuple[EndpointInfo, ...] = model.endpoints if model is not None else ()
    if not endpoints:
        return (1, ())
    return (0, min(endpoint_sort_key(e, by) for e in endpoints))


def _known_first(body: JSON, ids: list[str], catalog: CatalogSnapshot) -> JSON:
    known = [i for i in ids if _known(i, catalog)]
    if not known or (known == [ids[0]] and ids[0].startswith("router/")):
        # Planning answers the 404 naming the first unknown model, or the router's: its
        # candidates (``models``) are all unknown. A RouteLLM name's ``models`` are fallbacks
        # after its pair: the unknown ones are dropped as beside a catalog model.
        return body
    return body | {"model": known[0], "models": known[1:]}


def _reasoning_check(reasoning: object) -> None:
    if not isinstance(reasoning, dict):
        raise BadRequest(
            "reasoning must be an object {effort?, max_tokens?, exclude?, enabled?}.",
            param="reasoning",
        )
    effort, budget = reasoning.get("effort"), reasoning.get("max_tokens")
    if effort is not None and effort not in EFFORTS:
        raise BadRequest(
            f"reasoning.effort must be one of {', '.join(EFFORTS)}.", param="reasoning.effort"
        )
    if budget is not None and (
        not isinstance(budget, int) or isinstance(budget, bool) or budget < 1
    ):
        raise BadRequest(
            "reasoning.max_tokens must be a positive integer.", param="reasoning.max_tokens"
        )
    for name in ("exclude", "enabled"):
        if not isinstance(reasoning.get(name, False), bool):
            raise BadRequest(f"reasoning.{name} must be true or false.", param=f"reasoning.{name}")
