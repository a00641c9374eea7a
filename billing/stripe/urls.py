"""``/billing/stripe/``: the webhook and the pay/return pages of a top-up."""

from django.urls import path

from billing.stripe import pages, webhooks

urlpatterns = [
    path("webhook", webhooks.stripe_webhook, name="stripe-webhook"),
    path("pay/<int:payment_id>", pages.checkout_pay, name="stripe-checkout-pay"),
    path("return/<int:payment_id>", pages.checkout_return, name="stripe-checkout-return"),
]
