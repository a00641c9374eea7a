"""Top-up API: checkout (with a fee quote first), receipts, and the auto top-up setting."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Role
from accounts.tenant_api import TenantAPIView
from billing.models import CreditAccount, Payment
from billing.services import credit_account_for
from billing.stripe.payments import (
    auto_topup_check,
    auto_topup_configure,
    checkout_start,
    topup_quote,
)
from routerhub.money import money_str


@extend_schema_field({"type": "string", "format": "decimal", "example": "25.00000000"})
class MoneyOutput(serializers.Field[Any, Any, Any, Any]):
    """Decimal USD as API.md's string (``"25.00000000"``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: Decimal) -> str | None:
        return money_str(value)


class QuoteInput(serializers.Serializer[Any]):
    amount = serializers.DecimalField(max_digits=20, decimal_places=8)


class QuoteOutput(serializers.Serializer[Any]):
    amount = MoneyOutput()
    fee = MoneyOutput()
    total = MoneyOutput()
    currency = serializers.CharField(default="USD")


class CheckoutInput(QuoteInput):
    save_payment_method = serializers.BooleanField(
        required=False, help_text="Keep the card for automatic top-ups (default: when enabled)."
    )


class CheckoutOutput(QuoteOutput):
    checkout_url = serializers.URLField()
    session_id = serializers.CharField(help_text="The Stripe PaymentIntent id.")


class ReceiptOutput(serializers.ModelSerializer[Payment]):
    amount = MoneyOutput()
    fee = MoneyOutput()
    total = serializers.SerializerMethodField()
    session_id = serializers.CharField(source="stripe_payment_intent_id")

    class Meta:
        model = Payment
        fields = [
            "id",
            "kind",
            "status",
            "amount",
            "fee",
            "total",
            "currency",
            "session_id",
            "receipt_url",
            "failure_message",
            "created_at",
            "paid_at",
        ]

    def get_total(self, payment: Payment) -> str | None:
        return money_str(payment.amount + payment.fee)


class AutoTopupInput(serializers.Serializer[Any]):
    threshold = serializers.DecimalField(
        max_digits=20,
        decimal_places=8,
        allow_null=True,
        help_text="top up when the balance falls below this; less than amount",
    )
    amount = serializers.DecimalField(max_digits=20, decimal_places=8, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # InvalidInput, not a ValidationError: the 400 names the field as the service words it.
        auto_topup_check(threshold=attrs.get("threshold"), amount=attrs.get("amount"))
        return attrs


class AutoTopupOutput(serializers.Serializer[Any]):
    enabled = serializers.BooleanField()
    threshold = serializers.CharField(allow_null=True)
    amount = serializers.CharField(allow_null=True)


def _auto_topup_body(account: CreditAccount) -> dict[str, Any]:
    return {
        "enabled": account.auto_topup_threshold is not None,
        "threshold": money_str(account.auto_topup_threshold),
        "amount": money_str(account.auto_topup_amount),
    }


class CheckoutQuoteView(TenantAPIView):
    """``GET /api/v1/credits/checkout/quote?amount=``: the fee and total before paying."""

    tenant_model = Payment

    @extend_schema(parameters=[QuoteInput], responses=QuoteOutput)
    def get(self, request: Request) -> Response:
        data = QuoteInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        quote = topup_quote(data.validated_data["amount"])
        return Response(QuoteOutput(quote).data)


class CheckoutView(TenantAPIView):
    """``POST /api/v1/credits/checkout``: start a top-up; pay at ``checkout_url``."""

    tenant_model = Payment
    required_roles = {"POST": Role.OWNER}

    @extend_schema(request=CheckoutInput, responses={201: CheckoutOutput})
    def post(self, request: Request) -> Response:
        data = CheckoutInput(data=request.data)
        data.is_valid(raise_exception=True)
        save_card = data.validated_data.get("save_payment_method")
        if save_card is None:
            save_card = credit_account_for(self.organization.pk).auto_topup_amount is not None
        started = checkout_start(
            organization=self.organization,
            amount=data.validated_data["amount"],
            created_by=self.acting_person(),
            save_payment_method=save_card,
        )
        payment = started.payment
        body = {
            "checkout_url": started.checkout_url,
            "session_id": started.session_id,
            "amount": payment.amount,
            "fee": payment.fee,
            "total": payment.amount + payment.fee,
        }
        return Response(CheckoutOutput(body).data, status=status.HTTP_201_CREATED)


class ReceiptListView(TenantAPIView):
    """``GET /api/v1/credits/receipts``: the organization's card payments, newest first."""

    tenant_model = Payment
    required_roles = {"GET": Role.ADMIN}

    def scope_queryset(self, queryset: Any) -> Any:
        return queryset.exclude(stripe_payment_intent_id="").order_by("-created_at", "-id")

    @extend_schema(responses=ReceiptOutput(many=True))
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ReceiptOutput(page, many=True).data)


class AutoTopupView(TenantAPIView):
    """``GET``/``PATCH /api/v1/credits/auto-topup``: charge the saved card below a threshold."""

    tenant_model = Payment
    required_roles = {"GET": Role.ADMIN, "PATCH": Role.OWNER}

    @extend_schema(responses=AutoTopupOutput)
    def get(self, request: Request) -> Response:
        return Response(_auto_topup_body(credit_account_for(self.organization.pk)))

    @extend_schema(request=AutoTopupInput, responses=AutoTopupOutput)
    def patch(self, request: Request) -> Response:
        data = AutoTopupInput(data=request.data)
        data.is_valid(raise_exception=True)
        account = auto_topup_configure(
            organization=self.organization,
            threshold=data.validated_data["threshold"],
            amount=data.validated_data["amount"],
        )
        return Response(_auto_topup_body(account))
