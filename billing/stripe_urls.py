"""``/billing/stripe/``: the webhook and the pay/return pages of a top-up."""

from django.urls import path

from billing import stripe_pages, webhooks

urlpatterns = [
    path("webhook", webhooks.stripe_webhook, name="stripe-webhook"),
    path("pay/<int:payment_id>", stripe_pages.checkout_pay, name="stripe-checkout-pay"),
    path("return/<int:payment_id>", stripe_pages.checkout_return, name="stripe-checkout-return"),
]
