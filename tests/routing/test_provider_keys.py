"""Bring-your-own provider keys: the API, encryption at rest and their use before platform keys."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from accounts.models import KeyScope
from routing.models import Provider, ProviderKey
from routing.provider_secrets import secret_decrypt
from routing.services import catalog_sync_file, provider_key_create
from tests.factories import key_client, key_make, session_client
from tests.routing.world import World

URL = "/api/v1/provider-keys"


def browser(user, organization):  # type: ignore[no-untyped-def]
    """A signed-in session that sends the CSRF token like the dashboard's JavaScript does."""
    client = session_client(user, organization)
    client.get("/dashboard/")
    client.defaults["HTTP_X_CSRFTOKEN"] = client.cookies["csrftoken"].value
    return client


@pytest.fixture
def openai_provider(db: None) -> Provider:
    catalog_sync_file()
    return Provider.objects.get(slug="openai")


def test_admin_adds_a_key_whose_secret_is_never_returned(
    tenants, openai_provider: Provider
) -> None:  # type: ignore[no-untyped-def]
    client = browser(tenants.admin, tenants.organization)

    created = client.post(
        URL, {"provider": "openai", "secret": "sk-live-abcdefgh1234", "name": "prod"}, format="json"
    )
    listed = client.get(URL)

    assert created.status_code == 201
    assert created.json() == {"id": created.json()["id"], "provider": "openai", "name": "prod", "base_url": "", "last4": "1234",
                              "created_at": created.json()["created_at"]}  # fmt: skip
    assert "sk-live" not in listed.content.decode()
    assert listed.json()["results"][0]["last4"] == "1234"
    stored = ProviderKey.objects.get()
    assert b"sk-live" not in bytes(stored.encrypted_secret)
    assert secret_decrypt(stored.encrypted_secret) == "sk-live-abcdefgh1234"


def test_members_may_list_but_not_add_keys(tenants, openai_provider: Provider) -> None:  # type: ignore[no-untyped-def]
    client = browser(tenants.member, tenants.organization)

    assert client.get(URL).status_code == 200
    assert (
        client.post(
            URL, {"provider": "openai", "secret": "sk-live-abcdefgh"}, format="json"
        ).status_code
        == 403
    )


def test_management_key_can_add_and_delete_keys(tenants, openai_provider: Provider) -> None:  # type: ignore[no-untyped-def]
    client = key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))

    created = client.post(URL, {"provider": "openai", "secret": "sk-live-abcdefgh"}, format="json")
    deleted = client.delete(f"{URL}/{created.json()['id']}")

    assert (created.status_code, deleted.status_code) == (201, 204)
    assert not ProviderKey.objects.exists()


def test_outsiders_cannot_see_or_delete_another_organizations_key(
    tenants, openai_provider: Provider
) -> None:  # type: ignore[no-untyped-def]
    key = provider_key_create(
        organization=tenants.organization, provider=openai_provider, secret="sk-live-abcdefgh"
    )
    outsider = browser(tenants.outsider, tenants.outsider_organization)

    assert outsider.get(URL).json()["results"] == []
    assert outsider.delete(f"{URL}/{key.pk}").status_code == 404
    assert ProviderKey.objects.filter(pk=key.pk).exists()


def test_unknown_provider_is_400(tenants, openai_provider: Provider) -> None:  # type: ignore[no-untyped-def]
    client = browser(tenants.admin, tenants.organization)

    response = client.post(URL, {"provider": "nope", "secret": "sk-live-abcdefgh"}, format="json")

    assert response.status_code == 400 and response.json()["error"]["param"] == "provider"


def test_rotation_reencrypts_under_the_new_key_and_old_keys_still_decrypt(
    tenants, openai_provider: Provider, settings
) -> None:  # type: ignore[no-untyped-def]
    old_keys = list(settings.PROVIDER_KEYS_ENCRYPTION_KEYS)
    key = provider_key_create(
        organization=tenants.organization, provider=openai_provider, secret="sk-live-rotate-me"
    )
    new_key = Fernet.generate_key().decode()
    settings.PROVIDER_KEYS_ENCRYPTION_KEYS = [new_key, *old_keys]

    assert (
        secret_decrypt(ProviderKey.objects.get(pk=key.pk).encrypted_secret) == "sk-live-rotate-me"
    )
    call_command("rotate_provider_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115
    settings.PROVIDER_KEYS_ENCRYPTION_KEYS = [new_key]

    assert (
        secret_decrypt(ProviderKey.objects.get(pk=key.pk).encrypted_secret) == "sk-live-rotate-me"
    )


def test_byok_key_is_used_before_the_platform_key_and_billed_as_byok(
    world: World, settings
) -> None:  # type: ignore[no-untyped-def]
    provider = Provider.objects.get(slug="fake-openai")
    provider_key_create(
        organization=world.organization, provider=provider, secret="sk-own-key-9999"
    )
    client = world.openai_client()

    completion = client.chat.completions.create(
        model="test/gpt", messages=[{"role": "user", "content": "hi"}]
    )

    assert world.last_upstream("/v1/chat/completions")["headers"]["authorization"] == "***9999"
    usage = completion.usage
    assert usage is not None and usage.model_extra["is_byok"] is True
    list_cost = Decimal(usage.prompt_tokens * 1 + usage.completion_tokens * 2) / Decimal(10**6)
    record = world.usage_record(completion.id)
    assert record.is_byok and record.cost == (list_cost * settings.BYOK_FEE_RATE).quantize(
        Decimal("1e-8")
    )


def test_provider_without_any_credential_is_unavailable(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PROVIDER_API_KEYS = {}
    client = world.openai_client()

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="test/gpt", messages=[{"role": "user", "content": "hi"}]
        )

    assert caught.value.status_code == 503
    assert "no credentials" in caught.value.response.json()["error"]["message"]
