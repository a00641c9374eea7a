"""Encryption at rest of bring-your-own provider keys (Fernet, rotatable).

``settings.PROVIDER_KEYS_ENCRYPTION_KEYS`` lists Fernet keys: the first encrypts, every one
decrypts. Rotation = prepend a new key, deploy, run ``manage.py rotate_provider_keys``, then drop
the old key.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@lru_cache(maxsize=4)
def _box(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _current_box() -> MultiFernet:
    return _box(tuple(settings.PROVIDER_KEYS_ENCRYPTION_KEYS))


def secret_encrypt(plaintext: str) -> bytes:
    return _current_box().encrypt(plaintext.encode())


def secret_decrypt(token: bytes) -> str:
    """Decrypt with any configured key; ``InvalidToken`` means the key that wrote it is gone."""
    return _current_box().decrypt(bytes(token)).decode()


def secret_reencrypt(token: bytes) -> bytes:
    """Re-encrypt under the first (newest) key."""
    return _current_box().rotate(bytes(token))


__all__ = ["InvalidToken", "secret_decrypt", "secret_encrypt", "secret_reencrypt"]
