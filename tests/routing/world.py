"""A test catalog pointing at the fake upstream, and an organization with credits and a key."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest

from accounts.models import KeyScope, Organization
from billing.models import UsageRecord
from billing.services import ledger_post
from routing.services import catalog_sync
from tests.factories import key_client, key_make, organization_make
from tests.log_hygiene import secret_register
from tests.routing.servers import poll

PLATFORM_KEYS = {
    "OPENAI_API_KEY": "sk-platform-openai-0001",
    "ANTHROPIC_API_KEY": "sk-ant-platform-0002",
    "GEMINI_API_KEY": "gemini-platform-0003",
}
for _platform_key in PLATFORM_KEYS.values():
    secret_register(_platform_key, "platform provider key")
ALL_CAPABILITIES = ["tools", "json", "structured_output", "vision", "streaming"]


def provider(slug: str, style: str, fake_url: str, key_env: str | None = None) -> dict[str, Any]:
    base = {"openai": f"{fake_url}/v1", "anthropic": fake_url, "gemini": f"{fake_url}/v1beta"}[
        style
    ]
    default_env = {
        "openai": "OPENAI_API_KEY",
        "anthropic": "ANTHROPIC_API_KEY",
        "gemini": "GEMINI_API_KEY",
    }
    return {"slug": slug, "name": slug.title(), "api_style": style, "base_url": base,
            "api_key_env": default_env[style] if key_env is None else key_env}  # fmt: skip


def model(
    model_id: str, capabilities: list[str] | None = None, max_output: int = 8192
) -> dict[str, Any]:
    return {"id": model_id, "name": model_id, "author": model_id.split("/")[0], "context_length": 128000,
            "max_output": max_output, "capabilities": ALL_CAPABILITIES if capabilities is None else capabilities}  # fmt: skip


def endpoint(model_id: str, provider_slug: str, upstream: str, input_: str = "1", output: str = "2",
             **extra: Any) -> dict[str, Any]:  # fmt: skip
    """Prices in USD per 1M tokens, as in catalog.toml."""
    return {"model": model_id, "provider": provider_slug, "upstream_model": upstream, "input": input_,
            "output": output, "source": "https://example.com/test", "checked": "2026-11-28", **extra}  # fmt: skip


def base_catalog(fake_url: str) -> dict[str, Any]:
    """One model per wire format, plus providers a test can add endpoints to."""
    return {
        "providers": [
            provider("fake-openai", "openai", fake_url),
            provider("fake-anthropic", "anthropic", fake_url),
            provider("fake-gemini", "gemini", fake_url),
            provider("fake-openai-b", "openai", fake_url),
        ],
        "models": [
            model("test/gpt"),
            model("test/claude"),
            model("test/gemini"),
            model("test/gemini-pro"),
        ],
        "endpoints": [
            endpoint("test/gpt", "fake-openai", "gpt-4o-mini"),
            endpoint(
                "test/claude", "fake-anthropic", "claude-sonnet-4-5", "3", "15", cached_input="0.3"
            ),
            endpoint("test/gemini", "fake-gemini", "gemini-2.5-flash", "0.3", "2.5"),
            endpoint("test/gemini-pro", "fake-gemini", "gemini-2.5-pro", "1.25", "10"),
        ],
    }


def embedding_models(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with test/embed on an OpenAI-style host ($0.02/M) and test/embed-g on Gemini's
    ($0.15/M), one endpoint each."""
    data["models"] += [model("test/embed", ["embeddings"]), model("test/embed-g", ["embeddings"])]
    data["endpoints"] += [
        endpoint("test/embed", "fake-openai", "text-embedding-3-small", "0.02", "0"),
        endpoint("test/embed-g", "fake-gemini", "gemini-embedding-001", "0.15", "0"),
    ]
    return data


@dataclass
class World:
    gateway_url: str
    fake_url: str
    fake: Any  # routing.fake_upstream.app.FakeUpstream
    organization: Organization
    key: str
    redis_url: str = ""

    def upstream_requests(self, path_part: str = "") -> list[dict[str, Any]]:
        return [r for r in self.fake.requests if path_part in r["path"]]

    def last_upstream(self, path_part: str = "") -> dict[str, Any]:
        requests = self.upstream_requests(path_part)
        assert requests, f"the fake upstream received no request matching {path_part!r}"
        return requests[-1]

    def catalog(self, data: dict[str, Any]) -> None:
        catalog_sync(data=data)
        from routing.gateway.catalog_cache import catalog_cache_clear

        catalog_cache_clear()

    def usage_record(self, generation_id: str) -> UsageRecord:
        return poll(lambda: UsageRecord.objects.filter(generation_id=generation_id).first())

    def key_for(self, **fields: Any) -> str:
        return key_make(self.organization, **fields)

    def openai_client(self, key: str | None = None) -> openai.OpenAI:
        """The OpenAI SDK on the gateway's ``/v1``, without retries (a test sees every answer)."""
        return openai.OpenAI(
            base_url=f"{self.gateway_url}/v1",
            api_key=self.key if key is None else key,
            max_retries=0,
        )

    def anthropic_client(self, key: str | None = None) -> anthropic.Anthropic:
        """The Anthropic SDK on the gateway, without retries."""
        return anthropic.Anthropic(
            base_url=self.gateway_url, api_key=self.key if key is None else key, max_retries=0
        )

    def pipeline_create(
        self, slug: str, kind: str, steps: list[dict[str, Any]], **more: Any
    ) -> Any:
        """``POST /api/v1/pipelines`` with a management key of the organization: the answer."""
        admin = key_client(self.key_for(scope=KeyScope.MANAGE))
        spec = {"slug": slug, "kind": kind, "steps": steps, **more}
        return admin.post("/api/v1/pipelines", spec, format="json")

    def client_leaves(self, path: str, body: dict[str, Any], *, after: float) -> None:
        """POST ``body`` and leave once ``after`` seconds pass without an answer (an answer
        before then fails the test, naming it)."""
        with pytest.raises(httpx.ReadTimeout):
            answer = httpx.post(
                f"{self.gateway_url}{path}",
                headers={"Authorization": f"Bearer {self.key}"},
                json=body,
                timeout=httpx.Timeout(10.0, read=after),
            )
            answer.read()
            raise AssertionError(f"answered before the client left: {answer.text[:500]}")

    def client_reads_then_leaves(self, path: str, body: dict[str, Any], *, events: int) -> None:
        """POST ``body`` (a stream), read its first ``events`` SSE events, then leave; a stream
        that ends or stalls (10 s) before them fails the test."""
        read, url, headers = 0, f"{self.gateway_url}{path}", {"Authorization": f"Bearer {self.key}"}
        with httpx.stream("POST", url, headers=headers, json=body, timeout=10.0) as answer:
            for line in answer.iter_lines():
                read += line.startswith("data:")
                if read == events:
                    return
        raise AssertionError(f"the stream ended after {read} of {events} events")


def world_make(gateway_url: str, fake_url: str, fake: Any, credits: str = "10") -> World:
    organization = organization_make(name="Gateway Org")
    ledger_post(
        organization=organization,
        kind="promotion",
        amount=Decimal(credits),
        idempotency_key=f"grant-{organization.pk}",
    )
    world = World(gateway_url, fake_url, fake, organization, key_make(organization))
    world.catalog(base_catalog(fake_url))
    return world
