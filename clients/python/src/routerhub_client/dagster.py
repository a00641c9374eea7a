"""Dagster integration (the ``dagster`` extra): a ``ConfigurableResource`` that gives assets an
inference client (the official ``openai`` SDK pointed at RouterHub) and a management client,
and ``RoutingTally``, which turns the completions an asset made into ``MaterializeResult``
metadata (requests, cost, model mix)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dagster import ConfigurableResource, MetadataValue
from openai import OpenAI
from pydantic import Field

from routerhub_client.client import RouterHub


class RouterHubResource(ConfigurableResource["RouterHubResource"]):
    """RouterHub for Dagster assets, ops and sensors.

    ``api_key`` is an ``inference`` key (chat completions, ``select``, feedback);
    ``management_api_key`` a ``manage`` key for datasets, training and usage.
    """

    base_url: str = Field(description="RouterHub's root URL, e.g. https://routerhub.example.")
    api_key: str = Field(description="An inference key (rh-live-…).")
    management_api_key: str | None = Field(
        default=None, description="A manage key (rh-mgmt-…) for datasets, routers and usage."
    )
    timeout: float = Field(default=60.0, description="Seconds before a request times out.")
    max_retries: int = Field(default=2, description="Retries on 429/503 and connection errors.")

    @contextmanager
    def inference_client(self) -> Iterator[OpenAI]:
        """An ``openai.OpenAI`` for ``<base_url>/v1``: ``model="router/<slug>"`` routes."""
        with self._client(self.api_key) as hub:
            yield hub.openai

    @contextmanager
    def management_client(self) -> Iterator[RouterHub]:
        """A ``RouterHub`` with the manage key (the inference key if none is configured, for
        the calls it may make: ``routers.select``, ``feedback``, ``generations``)."""
        with self._client(self.management_api_key or self.api_key) as hub:
            yield hub

    def _client(self, api_key: str) -> RouterHub:
        return RouterHub(
            base_url=self.base_url,
            api_key=api_key,
            timeout=self.timeout,
            max_retries=self.max_retries,
            default_headers={"X-Client": "routerhub-dagster"},
        )


@dataclass
class RoutingTally:
    """Counts the models that served an asset's completions and adds up their cost."""

    models: Counter[str] = field(default_factory=Counter)
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, completion: Any) -> None:
        """Count one ``ChatCompletion`` (its ``model`` is the model that served it)."""
        self.models[completion.model] += 1
        usage = completion.usage
        if usage is None:
            return
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.cost += float((usage.model_extra or {}).get("cost") or 0.0)

    def metadata(self) -> dict[str, MetadataValue]:
        """``MaterializeResult`` metadata: requests, cost in USD, tokens and the model mix."""
        requests = sum(self.models.values())
        mix = {model: round(count / requests, 4) for model, count in self.models.items()}
        return {
            "requests": MetadataValue.int(requests),
            "cost_usd": MetadataValue.float(round(self.cost, 8)),
            "prompt_tokens": MetadataValue.int(self.prompt_tokens),
            "completion_tokens": MetadataValue.int(self.completion_tokens),
            "model_mix": MetadataValue.json(dict(sorted(mix.items()))),
            "model_counts": MetadataValue.json(dict(sorted(self.models.items()))),
        }
