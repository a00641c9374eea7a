"""Stripe-style signatures: ``RouterHub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The HMAC key is the endpoint's secret (``whsec_…``, as text) and the signed message is
``f"{t}.{body}"``: the timestamp binds the signature to one moment, so a receiver that rejects
old timestamps (``WEBHOOK_SIGNATURE_TOLERANCE_SECONDS``) is safe from replays. README
"Webhooks" shows the same verification for receivers.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "RouterHub-Signature"


def signature_compute(*, secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(*, secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature_compute(secret=secret, timestamp=t, body=body)}"


def signature_verify(
    *, secret: str, header: str, body: bytes, tolerance: int, now: float | None = None
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds of now."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature_compute(secret=secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, parts.get("v1", ""))
