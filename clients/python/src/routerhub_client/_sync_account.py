"""Synchronous account resources: keys, credits, ledger, usage, generations, feedback, BYOK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from routerhub_client._http import SyncTransport, clean_params, relative_path
from routerhub_client._payloads import UNSET, csv_frame, given_fields, page_items, usage_frame
from routerhub_client.types import (
    ApiKey,
    AutoTopup,
    Checkout,
    Credits,
    CurrentKey,
    Feedback,
    Generation,
    LedgerEntry,
    LimitReset,
    ProviderKey,
    Quote,
    Receipt,
    Scope,
    Usage,
)

if TYPE_CHECKING:
    import pandas as pd


class SyncResource:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._t.request(method, path, **kwargs).json()

    def _pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        """Every item of a list endpoint, following ``next`` links page by page."""
        url: str | None = path
        query = clean_params(params)
        while url is not None:
            items, next_url = page_items(self._json("GET", url, params=query))
            yield from items
            url, query = (relative_path(next_url), None) if next_url else (None, None)


class Keys(SyncResource):
    """``/api/v1/key`` and ``/api/v1/keys``."""

    def current(self) -> CurrentKey:
        """The calling key: its organization, limits, usage and rate limits."""
        return cast(CurrentKey, self._json("GET", "/api/v1/key"))

    def create(
        self,
        name: str,
        *,
        scope: Scope = "inference",
        limit: str | None = None,
        limit_reset: LimitReset | None = None,
        expires_at: str | None = None,
        allowed_models: list[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget_aware: bool | None = None,
    ) -> ApiKey:
        """A new key; its plaintext is in ``["key"]``, shown this once only."""
        body = clean_params(
            {"name": name, "scope": scope, "limit": limit, "limit_reset": limit_reset,
             "expires_at": expires_at, "allowed_models": allowed_models, "rpm": rpm, "tpm": tpm,
             "budget_aware": budget_aware}
        )  # fmt: skip
        return cast(ApiKey, self._json("POST", "/api/v1/keys", json=body))

    def get(self, key_id: int) -> ApiKey:
        return cast(ApiKey, self._json("GET", f"/api/v1/keys/{key_id}"))

    def update(
        self,
        key_id: int,
        *,
        name: str = UNSET,
        limit: str | None = UNSET,
        limit_reset: LimitReset | None = UNSET,
        expires_at: str | None = UNSET,
        allowed_models: list[str] | None = UNSET,
        rpm: int | None = UNSET,
        tpm: int | None = UNSET,
        budget_aware: bool = UNSET,
    ) -> ApiKey:
        """Change the given fields; pass None to clear a limit."""
        body = given_fields(name=name, limit=limit, limit_reset=limit_reset, expires_at=expires_at,
                           allowed_models=allowed_models, rpm=rpm, tpm=tpm,
                           budget_aware=budget_aware)  # fmt: skip
        return cast(ApiKey, self._json("PATCH", f"/api/v1/keys/{key_id}", json=body))

    def revoke(self, key_id: int) -> ApiKey:
        """Revoke (``DELETE``) a key; answers the revoked key."""
        return cast(ApiKey, self._json("DELETE", f"/api/v1/keys/{key_id}"))

    def list(self, *, page_size: int | None = None) -> Iterator[ApiKey]:
        return self._pages("/api/v1/keys", {"limit": page_size})


class CreditsResource(SyncResource):
    """``/api/v1/credits``, its checkout, receipts and auto top-up, and ``/api/v1/ledger``."""

    def get(self) -> Credits:
        return cast(Credits, self._json("GET", "/api/v1/credits"))

    def quote(self, amount: str) -> Quote:
        """The fee and total a checkout of ``amount`` USD would charge."""
        params = {"amount": amount}
        return cast(Quote, self._json("GET", "/api/v1/credits/checkout/quote", params=params))

    def checkout(self, amount: str, *, save_payment_method: bool | None = None) -> Checkout:
        """A Stripe Checkout session for ``amount`` USD: send the person to ``checkout_url``."""
        body = clean_params({"amount": amount, "save_payment_method": save_payment_method})
        return cast(Checkout, self._json("POST", "/api/v1/credits/checkout", json=body))

    def receipts(self, *, page_size: int | None = None) -> Iterator[Receipt]:
        return self._pages("/api/v1/credits/receipts", {"limit": page_size})

    def auto_topup(self) -> AutoTopup:
        return cast(AutoTopup, self._json("GET", "/api/v1/credits/auto-topup"))

    def auto_topup_update(
        self, *, threshold: str | None = UNSET, amount: str | None = UNSET
    ) -> AutoTopup:
        """Set (or with None clear) the balance that triggers a top-up and its amount."""
        body = given_fields(threshold=threshold, amount=amount)
        return cast(AutoTopup, self._json("PATCH", "/api/v1/credits/auto-topup", json=body))

    def ledger(
        self, *, kind: str | None = None, page_size: int | None = None
    ) -> Iterator[LedgerEntry]:
        """The append-only ledger, newest first."""
        return self._pages("/api/v1/ledger", {"kind": kind, "limit": page_size})


class UsageResource(SyncResource):
    """``/api/v1/usage`` aggregates and the raw ``/api/v1/usage/export.csv``."""

    def get(
        self,
        *,
        group_by: str = "day",
        start: str | None = None,
        end: str | None = None,
        key: int | None = None,
        model: str | None = None,
        status: str | None = None,
    ) -> Usage:
        params = clean_params({"group_by": group_by, "start": start, "end": end, "key": key,
                               "model": model, "status": status})  # fmt: skip
        # Every page (up to 1,000 groups each), as one answer.
        return {"group_by": group_by, "results": list(self._pages("/api/v1/usage", params))}

    def dataframe(self, **filters: Any) -> pd.DataFrame:
        """``get(**filters)`` as a pandas DataFrame (the ``pandas`` extra)."""
        return usage_frame(list(self.get(**filters)["results"]))

    def export_csv(self, **filters: str | int | None) -> str:
        """One CSV row per request, as the server exports them."""
        response = self._t.request("GET", "/api/v1/usage/export.csv", params=clean_params(filters))
        return response.text

    def export_dataframe(self, **filters: str | int | None) -> pd.DataFrame:
        return csv_frame(self.export_csv(**filters))


class Generations(SyncResource):
    def get(self, generation_id: str) -> Generation:
        """One served request by its ``gen-…`` id: model, tokens, cost, latency."""
        params = {"id": generation_id}
        return cast(Generation, self._json("GET", "/api/v1/generation", params=params))


class FeedbackResource(SyncResource):
    def create(self, generation_id: str, score: float, *, comment: str | None = None) -> Feedback:
        """Quality feedback on a served request (what ``retrain_from_feedback`` learns from)."""
        body = clean_params({"generation_id": generation_id, "score": score, "comment": comment})
        return cast(Feedback, self._json("POST", "/api/v1/feedback", json=body))


class ProviderKeys(SyncResource):
    """Bring-your-own provider keys; the secret is write-only."""

    def create(
        self, provider: str, secret: str, *, name: str | None = None, base_url: str | None = None
    ) -> ProviderKey:
        body = clean_params(
            {"provider": provider, "secret": secret, "name": name, "base_url": base_url}
        )
        return cast(ProviderKey, self._json("POST", "/api/v1/provider-keys", json=body))

    def delete(self, provider_key_id: int) -> None:
        self._t.request("DELETE", f"/api/v1/provider-keys/{provider_key_id}")

    def list(self, *, page_size: int | None = None) -> Iterator[ProviderKey]:
        return self._pages("/api/v1/provider-keys", {"limit": page_size})
