from django.urls import path

from billing import api, generation_api
from billing.stripe import api as stripe_api

urlpatterns = [
    path("key", api.CurrentKeyView.as_view(), name="api-current-key"),
    path("auth/key", api.AuthKeyView.as_view(), name="api-auth-key"),
    path("credits/checkout", stripe_api.CheckoutView.as_view(), name="api-checkout"),
    path(
        "credits/checkout/quote",
        stripe_api.CheckoutQuoteView.as_view(),
        name="api-checkout-quote",
    ),
    path("credits/receipts", stripe_api.ReceiptListView.as_view(), name="api-receipts"),
    path("credits/auto-topup", stripe_api.AutoTopupView.as_view(), name="api-auto-topup"),
    path("credits", api.CreditsView.as_view(), name="api-credits"),
    path("ledger", api.LedgerView.as_view(), name="api-ledger"),
    path("generation", generation_api.GenerationView.as_view(), name="api-generation"),
    path("usage", api.UsageView.as_view(), name="api-usage"),
    path("usage/export.csv", api.UsageExportView.as_view(), name="api-usage-export"),
]
