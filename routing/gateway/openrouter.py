"""OpenRouter's paths on the gateway, for clients written for OpenRouter (base URL ``…/api/v1``).

Inference paths are the ``/v1`` handlers themselves (``/api/v1/chat/completions`` is
``/v1/chat/completions``, and so on); the model listings are OpenRouter's shapes:
``GET /api/v1/models`` (``{"data": [model]}`` with ``architecture``, ``top_provider``, string
prices per token; ``?supported_parameters=tools,…`` keeps the models that support them all;
``?category=programming`` keeps the models whose catalog ``categories`` include it, one of
OpenRouter's twelve (another is a 400 naming ``category``, as OpenRouter's enum refuses it)) and
``GET /api/v1/models/{author}/{slug}/endpoints``. Paths RouterHub's own platform API already owns
(``/api/v1/key``, ``/api/v1/credits``, ``/api/v1/generation``) stay Django's views; they carry
OpenRouter's ``data`` envelope beside their own fields.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

import orjson

from routerhub.errors import BadRequest, NotFound
from routing.gateway import chat, completions, embeddings, health, responses
from routing.gateway.catalog_cache import CatalogSnapshot, EndpointInfo, ModelInfo, catalog_get
from routing.gateway.http import GatewayRequest, Scope
from routing.gateway.listing import price_str
from routing.models import MODEL_CATEGORIES
from routing.providers.base import JSON
from routing.providers.embeddings import EMBEDDING_PARAMETERS

_PREFIX = "/api/v1"
_INFERENCE: dict[str, Callable[[GatewayRequest], Awaitable[None]]] = {
    "/chat/completions": chat.chat_completions,
    "/completions": completions.completions,
    "/embeddings": embeddings.embeddings,
    "/responses": responses.responses,
}
_MAX_QUERY_CHARS = 2048
_ENDPOINTS_PATH = f"{_PREFIX}/models/{{author}}/{{slug}}/endpoints"
_ENDPOINTS = re.compile(_ENDPOINTS_PATH.replace("{author}/{slug}", "(?P<model>[^/]+/[^/]+)"))


def openrouter_routes() -> list[str]:
    """``METHOD /path`` of each OpenRouter path the gateway serves, from the tables it routes by
    (``routerhub.schema.gateway_routes`` names them)."""
    inference = [f"POST {_PREFIX}{path}" for path in _INFERENCE]
    return [*inference, f"GET {_PREFIX}/models", f"GET {_ENDPOINTS_PATH}"]


def openrouter_route(scope: Scope) -> bool:
    """Whether an ``/api/v1`` request is one of OpenRouter's paths the gateway serves."""
    path = scope["path"].rstrip("/")
    return (
        path.removeprefix(_PREFIX) in _INFERENCE
        or path == f"{_PREFIX}/models"
        or _ENDPOINTS.fullmatch(path) is not None
    )


async def openrouter(req: GatewayRequest, method_check: Callable[[str, str], None]) -> None:
    path = req.path.rstrip("/")
    handler = _INFERENCE.get(path.removeprefix(_PREFIX))
    if handler is not None:
        method_check(req.method, "POST")
        await handler(req)
        return
    method_check(req.method, "GET")
    catalog = await catalog_get()
    if path == f"{_PREFIX}/models":
        query = _query(req.scope.get("query_string", b""))
        wanted, category = _wanted_parameters(query), _category(query)
        if wanted or category:
            listed = _models_supporting(catalog, wanted)
            if category:
                listed = [m for m in listed if category in catalog.models[m["id"]].categories]
            await req.respond_json(200, {"data": listed})
        else:
            await req.respond(200, _models_rendered(catalog))
        return
    match = _ENDPOINTS.fullmatch(path)
    assert match is not None, "openrouter_route chose this request"
    model = catalog.models.get(match["model"])
    if model is None or not model.endpoints:
        raise NotFound(f"Unknown model '{match['model']}'; GET /api/v1/models lists them.")
    await req.respond_json(200, {"data": _model_with_endpoints(model)})


def _pricing(endpoint: EndpointInfo) -> JSON:
    pricing: JSON = {
        "prompt": price_str(endpoint.prices.prompt),
        "completion": price_str(endpoint.prices.completion),
        "request": "0",
        "image": "0",
        "web_search": "0",
        "internal_reasoning": "0",
    }
    if endpoint.prices.cached_prompt is not None:
        pricing["input_cache_read"] = price_str(endpoint.prices.cached_prompt)
    return pricing


def _architecture(model: ModelInfo) -> JSON:
    vision = any(e.supports_vision for e in model.endpoints)
    inputs = ["text", "image"] if vision else ["text"]
    outputs = ["embeddings"] if model.is_embedding else ["text"]
    return {
        "modality": f"{'+'.join(inputs)}->{outputs[0]}",
        "input_modalities": inputs,
        "output_modalities": outputs,
        "tokenizer": "Other",
        "instruct_type": None,
    }


def _parameters(model: ModelInfo, endpoints: tuple[EndpointInfo, ...]) -> list[str]:
    if model.is_embedding:
        return sorted(EMBEDDING_PARAMETERS)
    names: set[str] = set()
    for endpoint in endpoints:
        names |= endpoint.supported_parameters
    return sorted(names | {"max_tokens", "reasoning"})


def _cheapest(model: ModelInfo) -> EndpointInfo:
    return min(
        model.endpoints, key=lambda e: (e.prices.prompt + e.prices.completion, e.provider_slug)
    )


def openrouter_model(model: ModelInfo) -> JSON:
    """A model as OpenRouter lists it: prices and ``top_provider`` from its cheapest endpoint."""
    top = _cheapest(model)
    return {
        "id": model.id,
        "canonical_slug": model.id,
        "name": model.name,
        "created": 0,
        "description": model.description,
        "context_length": model.context_length,
        "architecture": _architecture(model),
        "pricing": _pricing(top),
        "top_provider": {
            "context_length": top.context_length,
            "max_completion_tokens": top.max_output or None,
            "is_moderated": False,
        },
        "per_request_limits": None,
        "supported_parameters": _parameters(model, model.endpoints),
    }


def _endpoint(model: ModelInfo, endpoint: EndpointInfo) -> JSON:
    return {
        "name": f"{endpoint.provider_name} | {model.id}",
        "model_id": model.id,
        "model_name": model.name,
        "context_length": endpoint.context_length,
        "pricing": _pricing(endpoint),
        "provider_name": endpoint.provider_name,
        "tag": endpoint.provider_slug,
        "quantization": None,
        "max_completion_tokens": endpoint.max_output or None,
        "max_prompt_tokens": None,
        "supported_parameters": _parameters(model, (endpoint,)),
        "status": -1 if health.breaker_open_for(endpoint.id) else 0,
        "uptime_last_30m": None,
        "supports_implicit_caching": endpoint.prices.cached_prompt is not None,
        # RouterHub's running averages in this process, not percentiles (a default before the
        # endpoint has served here): seconds to the first byte, and tokens per second.
        "latency_last_30m": {"p50": health.latency_ms(endpoint.id) / 1000},
        "throughput_last_30m": {"p50": health.throughput(endpoint.id)},
    }


def _model_with_endpoints(model: ModelInfo) -> JSON:
    head = {
        name: value
        for name, value in openrouter_model(model).items()
        if name in ("id", "name", "created", "description", "architecture")
    }
    ordered = sorted(
        model.endpoints, key=lambda e: (e.prices.prompt + e.prices.completion, e.provider_slug)
    )
    return head | {"endpoints": [_endpoint(model, e) for e in ordered]}


def _query(raw: bytes) -> dict[str, list[str]]:
    return parse_qs(raw.decode("latin-1")[:_MAX_QUERY_CHARS])


def _category(query: dict[str, list[str]]) -> str | None:
    """OpenRouter's ``?category=`` (one of ``MODEL_CATEGORIES``; empty is no filter)."""
    values = [v.strip().lower() for v in query.get("category", []) if v.strip()]
    if not values:
        return None
    if len(values) > 1 or values[0] not in MODEL_CATEGORIES:
        raise BadRequest(
            f"category must be one of {', '.join(MODEL_CATEGORIES)} (one at a time).",
            param="category",
        )
    return values[0]


def _wanted_parameters(query: dict[str, list[str]]) -> set[str]:
    """OpenRouter's ``?supported_parameters=tools,response_format`` filter (every one needed)."""
    values = ",".join(query.get("supported_parameters", []))
    return {name.strip() for name in values.split(",") if name.strip()}


def _models_supporting(catalog: CatalogSnapshot, wanted: set[str]) -> list[JSON]:
    models = sorted(catalog.models.values(), key=lambda m: m.id)
    listed = [openrouter_model(m) for m in models if m.endpoints]
    return [m for m in listed if wanted <= set(m["supported_parameters"])]


class _Rendered:
    revision: int | None = None
    body: bytes = b""


def _models_rendered(catalog: CatalogSnapshot) -> bytes:
    if _Rendered.revision != catalog.revision or not _Rendered.body:
        models = sorted(catalog.models.values(), key=lambda m: m.id)
        data = [openrouter_model(m) for m in models if m.endpoints]
        _Rendered.body = orjson.dumps({"data": data})
        _Rendered.revision = catalog.revision
    return _Rendered.body
