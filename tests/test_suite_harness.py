"""The suite's own harness (tests/conftest.py): what keeps thousands of HTTP clients cheap."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai


def _context(client: Any) -> Any:
    return client._transport._pool._ssl_context


def test_http_clients_share_the_default_ssl_context_and_keep_any_other() -> None:
    local = {"base_url": "http://127.0.0.1:9/v1", "api_key": "sk-test", "max_retries": 0}
    sdk_clients = [openai.OpenAI(**local), openai.OpenAI(**local), anthropic.Anthropic(**local)]
    plain = [httpx.Client(), httpx.Client()]
    unverified = httpx.Client(verify=False)

    assert _context(plain[0]) is _context(plain[1])
    assert len({id(_context(c._client)) for c in sdk_clients}) == 1
    assert _context(unverified) is not _context(plain[0])
    assert _context(plain[0]).verify_mode.name == "CERT_REQUIRED"
    for client in [*sdk_clients, *plain, unverified]:
        client.close()
