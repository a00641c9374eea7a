"""The demo provider for ``make run``: simulated models served by the local fake upstream.

Registered in ``settings.DEMO_SEEDERS``; ``manage.py seed_demo`` runs it with the demo
organization. Everything here is labelled simulated: the answers come from
``routing.fake_upstream``, which speaks the OpenAI, Anthropic and Gemini wire formats.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from accounts.models import Organization
from routing.services import catalog_sync, catalog_sync_file

_SOURCE = "https://github.com/routerhub/routerhub/blob/main/routing/demo.py"
_CAPABILITIES = ["tools", "json", "structured_output", "vision", "streaming"]

# Prices modelled on real tiers: small ≈ a nano/flash-lite model, medium ≈ a mini model,
# large ≈ a frontier model. They are charged against demo credits only.
DEMO_MODELS: list[dict[str, Any]] = [
    {
        "id": "demo/small",
        "name": "Demo Small (simulated)",
        "size": "small",
        "input": "0.10",
        "cached_input": "0.025",
        "output": "0.40",
        "context_length": 32768,
        "max_output": 4096,
        "providers": ["demo"],
    },
    {
        "id": "demo/medium",
        "name": "Demo Medium (simulated)",
        "size": "medium",
        "input": "0.40",
        "cached_input": "0.10",
        "output": "1.60",
        "context_length": 131072,
        "max_output": 8192,
        "providers": ["demo", "demo-gemini"],
    },
    {
        "id": "demo/large",
        "name": "Demo Large (simulated)",
        "size": "large",
        "input": "3.00",
        "cached_input": "0.30",
        "output": "15.00",
        "context_length": 200000,
        "max_output": 16384,
        "providers": ["demo-anthropic", "demo"],
    },
]


# The demo embedding model: deterministic unit vectors from the fake upstream, through its
# OpenAI and Gemini wire formats (the second a fallback for the first).
DEMO_EMBEDDING: dict[str, Any] = {
    "id": "demo/embed",
    "name": "Demo Embed (simulated)",
    "input": "0.02",
    "context_length": 8191,
    "providers": ["demo", "demo-gemini"],
}


def demo_catalog(upstream_url: str) -> dict[str, Any]:
    """The demo providers (one per wire format, all the same fake server) and models."""
    providers = _demo_providers(upstream_url)
    for provider in providers:
        provider.update(api_key_env="", is_simulated=True)
    models, endpoints = [], []
    for item in DEMO_MODELS:
        models.append(
            {
                "id": item["id"],
                "name": item["name"],
                "author": "demo",
                "description": "Simulated model answered by RouterHub's local fake upstream.",
                "context_length": item["context_length"],
                "max_output": item["max_output"],
                "capabilities": _CAPABILITIES,
                "is_simulated": True,
            }
        )
        for provider in item["providers"]:
            endpoints.append(
                {
                    "model": item["id"],
                    "provider": provider,
                    "upstream_model": f"demo-{item['size']}",
                    "input": item["input"],
                    "cached_input": item["cached_input"],
                    "output": item["output"],
                    "source": _SOURCE,
                    "checked": "2026-11-28",
                }
            )
    embedding_model, embedding_endpoints = _demo_embedding()
    models.append(embedding_model)
    endpoints += embedding_endpoints
    return {"providers": providers, "models": models, "endpoints": endpoints}


def _demo_providers(upstream_url: str) -> list[dict[str, Any]]:
    """One demo provider per wire format, all answered by the same fake server."""
    return [
        {
            "slug": "demo",
            "name": "Demo (simulated, OpenAI wire format)",
            "api_style": "openai",
            "base_url": f"{upstream_url}/v1",
        },
        {
            "slug": "demo-anthropic",
            "name": "Demo (simulated, Anthropic wire format)",
            "api_style": "anthropic",
            "base_url": upstream_url,
        },
        {
            "slug": "demo-gemini",
            "name": "Demo (simulated, Gemini wire format)",
            "api_style": "gemini",
            "base_url": f"{upstream_url}/v1beta",
        },
    ]


def _demo_embedding() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The demo embedding model and its endpoints."""
    item = DEMO_EMBEDDING
    model = {
        "id": item["id"],
        "name": item["name"],
        "author": "demo",
        "description": "Simulated embedding model: deterministic unit vectors.",
        "context_length": item["context_length"],
        "max_output": 0,
        "capabilities": ["embeddings"],
        "is_simulated": True,
    }
    endpoints = [
        {
            "model": item["id"],
            "provider": provider,
            "upstream_model": "demo-embed",
            "input": item["input"],
            "output": "0",
            "source": _SOURCE,
            "checked": "2026-11-28",
        }
        for provider in item["providers"]
    ]
    return model, endpoints


def seed_demo_provider(organization: Organization) -> None:
    """Load the real catalog and register the simulated demo provider (idempotent)."""
    catalog_sync_file()
    demo_upstream_register(settings.DEMO_UPSTREAM_URL)


def demo_upstream_register(upstream_url: str) -> None:
    """Point the demo providers at the fake upstream serving on ``upstream_url`` (idempotent)."""
    catalog_sync(data=demo_catalog(upstream_url))
