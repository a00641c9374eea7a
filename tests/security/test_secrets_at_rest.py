"""Secrets at rest: API keys only as peppered HMAC digests, provider keys only Fernet-encrypted,
prompts not kept unless the organization opted in; and no response echoes a secret."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from rest_framework.test import APIClient

from accounts.keys import key_authenticate, key_cache_clear, key_digest
from accounts.models import ApiKey, KeyScope
from routerhub.errors import Unauthorized
from routing.models import ProviderKey
from routing.provider_secrets import secret_decrypt
from tests.factories import key_client, key_make, organization_make
from tests.log_hygiene import CANARY_PROMPT, secret_register
from tests.routing.servers import gateway_idle
from tests.routing.world import World

PROVIDER_SECRET = secret_register("sk-byok-at-rest-7c41e09b2d", "provider secret")


def _text(value: Any) -> str:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        return value.decode("latin-1")  # every byte survives, so raw plaintext would show
    return str(value)


def database_dump() -> str:
    """Every column of every row of every table, bytea included, sessions decoded."""
    parts: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            for row in cursor.fetchall():
                parts.extend(_text(value) for value in row)
            if table == "django_session":
                cursor.execute("SELECT session_data FROM django_session")
                parts.extend(str(SessionStore().decode(data)) for (data,) in cursor.fetchall())
    return "\n".join(parts)


def redis_dump(url: str) -> str:
    """Every value in the test's Redis database (cache, rate limits, usage outbox)."""
    if not url:
        return ""
    from routerhub.redis_clients import redis_client

    client = redis_client(url)
    parts: list[str] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            parts.append(_text(client.get(key)))
        elif kind == "list":
            parts.extend(_text(v) for v in client.lrange(key, 0, -1))
        elif kind == "hash":
            parts.extend(_text(v) for v in client.hgetall(key).values())
        elif kind == "stream":
            parts.extend(str(entry) for entry in client.xrange(key))
        elif kind in {"set", "zset"}:
            members = client.smembers(key) if kind == "set" else client.zrange(key, 0, -1)
            parts.extend(_text(v) for v in members)
    return "\n".join(parts)


def _secret_parts(plaintext: str) -> list[str]:
    """The key, its random part, and the random part after the 8 characters displayed."""
    random_part = plaintext.split("-", 2)[2]
    return [plaintext, random_part, random_part[8:]]


def test_no_api_key_provider_secret_or_unlogged_prompt_is_stored_anywhere(world: World) -> None:
    manager = key_client(key_make(world.organization, scope=KeyScope.MANAGE))
    created = [
        manager.post("/api/v1/keys", {"name": name, "scope": scope}, format="json")
        for name, scope in (("inference", KeyScope.INFERENCE), ("manage", KeyScope.MANAGE))
    ]
    byok = manager.post(
        "/api/v1/provider-keys",
        {"provider": "fake-openai", "secret": PROVIDER_SECRET, "name": "own"},
        format="json",
    )
    assert [r.status_code for r in created] == [201, 201] and byok.status_code == 201
    plaintexts = [secret_register(r.json()["key"], "API key") for r in created]
    # Use the keys, so that every table and cache they touch (last use, usage, ledger) is written.
    completion = httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {plaintexts[0]}"},
        json={"model": "test/gpt", "messages": [{"role": "user", "content": CANARY_PROMPT}]},
        timeout=20,
    )
    assert completion.status_code == 200 and completion.json()["usage"]["is_byok"] is True
    assert key_client(plaintexts[1]).get("/api/v1/key").status_code == 200
    gateway_idle()
    world.usage_record(completion.json()["id"])
    assert world.last_upstream()["headers"]["authorization"] == "***" + PROVIDER_SECRET[-4:]

    stored = database_dump() + "\n" + redis_dump(world.redis_url)

    assert ApiKey.objects.filter(organization=world.organization).count() == 4
    # The dump does reach those rows: the display prefixes, digests and ciphertext are there.
    token = bytes(ProviderKey.objects.get(organization=world.organization).encrypted_secret)
    assert _text(token) in stored and PROVIDER_SECRET[-4:] in stored
    assert all(p[:16] in stored and key_digest(p) in stored for p in plaintexts)
    for plaintext in [*plaintexts, world.key]:
        for part in _secret_parts(plaintext):
            assert part not in stored
    assert PROVIDER_SECRET not in stored and PROVIDER_SECRET[3:-4] not in stored
    assert CANARY_PROMPT not in stored  # the organization did not opt into prompt logging


@pytest.mark.django_db
def test_the_key_digest_is_an_hmac_keyed_with_the_server_pepper(settings: Any) -> None:
    settings.API_KEY_PEPPER = "pepper-one-0123456789"
    plaintext = key_make(organization_make())
    stored = ApiKey.objects.get().digest

    expected = hmac.new(b"pepper-one-0123456789", plaintext.encode(), hashlib.sha256).hexdigest()
    assert stored == expected
    assert stored != hashlib.sha256(plaintext.encode()).hexdigest()  # not a bare hash
    assert key_authenticate(plaintext).prefix == plaintext[:16]
    # Another server pepper: the same plaintext no longer matches anything.
    settings.API_KEY_PEPPER = "pepper-two-9876543210"
    key_cache_clear()
    assert key_digest(plaintext) != stored
    with pytest.raises(Unauthorized):
        key_authenticate(plaintext)


@pytest.mark.django_db
def test_a_provider_secret_decrypts_only_with_the_configured_fernet_keys(settings: Any) -> None:
    from routing.models import Provider
    from routing.services import catalog_sync_file, provider_key_create

    catalog_sync_file()
    current = Fernet.generate_key().decode()
    settings.PROVIDER_KEYS_ENCRYPTION_KEYS = [current]
    key = provider_key_create(
        organization=organization_make(),
        provider=Provider.objects.get(slug="openai"),
        secret=PROVIDER_SECRET,
    )
    token = bytes(ProviderKey.objects.get(pk=key.pk).encrypted_secret)

    assert PROVIDER_SECRET.encode() not in token
    assert Fernet(current.encode()).decrypt(token).decode() == PROVIDER_SECRET
    with pytest.raises(InvalidToken):
        Fernet(Fernet.generate_key()).decrypt(token)
    # Configured with other keys only (the one that wrote it dropped), the server cannot read it.
    settings.PROVIDER_KEYS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(InvalidToken):
        secret_decrypt(token)
    settings.PROVIDER_KEYS_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), current]
    assert secret_decrypt(token) == PROVIDER_SECRET  # an older key of the rotation list reads it


@pytest.mark.django_db
def test_only_the_create_response_carries_a_key_and_no_response_echoes_a_secret(
    tenants: Any,
) -> None:
    from routing.services import catalog_sync_file

    catalog_sync_file()
    manager_key = key_make(tenants.organization, scope=KeyScope.MANAGE)
    manager = key_client(manager_key)
    created = manager.post("/api/v1/keys", {"name": "ci"}, format="json")
    plaintext = secret_register(created.json()["key"], "API key")
    key_id = created.json()["id"]
    later = [
        manager.get("/api/v1/keys"),
        manager.get(f"/api/v1/keys/{key_id}"),
        manager.patch(f"/api/v1/keys/{key_id}", {"name": "renamed"}, format="json"),
        key_client(plaintext).get("/api/v1/key"),
        manager.patch(f"/api/v1/keys/{key_id}", {"rpm": "lots"}, format="json"),
        manager.delete(f"/api/v1/keys/{key_id}"),
        key_client(plaintext).get("/api/v1/key"),  # revoked: 401
    ]
    provider_key = [
        manager.post("/api/v1/provider-keys", {"provider": "openai", "secret": PROVIDER_SECRET},
                     format="json"),
        manager.get("/api/v1/provider-keys"),
        manager.post("/api/v1/provider-keys", {"provider": "nope", "secret": PROVIDER_SECRET},
                     format="json"),
        manager.post("/api/v1/provider-keys", {"provider": "openai", "secret": PROVIDER_SECRET,
                                               "name": "x" * 500}, format="json"),
    ]  # fmt: skip
    unknown = "rh-live-" + "Z" * 43
    refused = [APIClient().get("/api/v1/key", HTTP_AUTHORIZATION=f"Bearer {unknown}")]

    assert created.status_code == 201 and plaintext.startswith("rh-live-")
    assert [r.status_code for r in later] == [200, 200, 200, 200, 400, 200, 401]
    assert [r.status_code for r in provider_key] == [201, 200, 400, 400]
    assert refused[0].status_code == 401
    for response in later:
        assert plaintext not in response.content.decode()
        assert plaintext.split("-", 2)[2][8:] not in response.content.decode()
    for response in provider_key:
        assert PROVIDER_SECRET[3:-4] not in response.content.decode()
    assert unknown not in refused[0].content.decode()
    assert manager_key not in "".join(r.content.decode() for r in later + provider_key)
