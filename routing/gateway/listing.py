"""``GET /v1/models``: the catalog in OpenAI's list format with OpenRouter's additions, and the
fields of Anthropic's (``type``, ``display_name``, ``created_at``; ``has_more``, ``first_id``,
``last_id``) so the ``anthropic`` SDK's ``models.list`` / ``retrieve`` read it too.

Rendered once per catalog revision and served from memory.
"""

from __future__ import annotations

from decimal import Decimal

import orjson

from routerhub.errors import NotFound
from routing.gateway.catalog_cache import CatalogSnapshot, EndpointInfo, ModelInfo, catalog_get
from routing.gateway.http import GatewayRequest
from routing.providers.base import JSON
from routing.providers.embeddings import EMBEDDING_PARAMETERS

_CREATED_AT = "1970-01-01T00:00:00Z"  # ``created: 0`` in Anthropic's RFC 3339 form


def price_str(value: Decimal | None) -> str | None:
    """USD per token as a plain decimal string (``"0.00000015"``), as OpenRouter prints it."""
    if value is None:
        return None
    text = f"{value.normalize():f}"
    return text if text != "-0" else "0"


def _pricing(endpoint: EndpointInfo) -> JSON:
    pricing = {
        "prompt": price_str(endpoint.prices.prompt),
        "completion": price_str(endpoint.prices.completion),
    }
    if endpoint.prices.cached_prompt is not None:
        pricing["input_cache_read"] = price_str(endpoint.prices.cached_prompt)
    return pricing


def model_item(model: ModelInfo) -> JSON:
    endpoints = sorted(
        model.endpoints, key=lambda e: (e.prices.prompt + e.prices.completion, e.provider_slug)
    )
    cheapest = endpoints[0] if endpoints else None
    parameters: set[str] = set()
    for endpoint in endpoints:
        parameters |= endpoint.supported_parameters
    return {
        "id": model.id,
        "object": "model",
        "created": 0,
        "owned_by": model.author,
        "type": "model",
        "display_name": model.name,
        "created_at": _CREATED_AT,
        "name": model.name,
        "description": model.description,
        "context_length": model.context_length,
        "max_output": model.max_output,
        "pricing": _pricing(cheapest) if cheapest else {"prompt": None, "completion": None},
        "supported_parameters": sorted(EMBEDDING_PARAMETERS if model.is_embedding else parameters),
        "providers": [
            {
                "slug": e.provider_slug,
                "name": e.provider_name,
                "pricing": _pricing(e),
                "context_length": e.context_length,
                "max_output": e.max_output,
                "capabilities": {
                    "tools": e.supports_tools,
                    "json": e.supports_json,
                    "structured_output": e.supports_structured_output,
                    "vision": e.supports_vision,
                    "streaming": e.supports_streaming,
                    "embeddings": e.supports_embeddings,
                },
            }
            for e in endpoints
        ],
        "simulated": model.is_simulated,
    }


class _Rendered:
    revision: int | None = None
    body: bytes = b""


def _render(catalog: CatalogSnapshot) -> bytes:
    if _Rendered.revision != catalog.revision or not _Rendered.body:
        items = [
            model_item(m)
            for m in sorted(catalog.models.values(), key=lambda m: m.id)
            if m.endpoints
        ]
        ids = [item["id"] for item in items]
        _Rendered.body = orjson.dumps(
            {"object": "list", "data": items, "has_more": False,
             "first_id": ids[0] if ids else None, "last_id": ids[-1] if ids else None}
        )  # fmt: skip
        _Rendered.revision = catalog.revision
    return _Rendered.body


async def models_list(req: GatewayRequest) -> None:
    await req.respond(200, _render(await catalog_get()))


async def model_detail(req: GatewayRequest, model_id: str) -> None:
    model = (await catalog_get()).models.get(model_id)
    if model is None:
        raise NotFound(f"Unknown model '{model_id}'.", param="model")
    await req.respond_json(200, model_item(model))
