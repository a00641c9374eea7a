from django.urls import path

from billing import api

urlpatterns = [
    path("key", api.CurrentKeyView.as_view(), name="api-current-key"),
    path("credits", api.CreditsView.as_view(), name="api-credits"),
    path("ledger", api.LedgerView.as_view(), name="api-ledger"),
    path("generation", api.GenerationView.as_view(), name="api-generation"),
    path("usage", api.UsageView.as_view(), name="api-usage"),
    path("usage/export.csv", api.UsageExportView.as_view(), name="api-usage-export"),
]
