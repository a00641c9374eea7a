"""Pay and return pages of a top-up: Stripe.js confirms the PaymentIntent in the browser."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import Role
from accounts.tenancy import dashboard_organization, organization_required
from billing.models import Payment, PaymentStatus
from billing.stripe.payments import payment_client_secret
from routerhub.security_headers import HEADER, page_policy


def _organization_payment(request: HttpRequest, **lookup: object) -> Payment:
    payment = Payment.objects.for_tenant(dashboard_organization(request)).filter(**lookup).first()
    if payment is None:
        raise Http404("No such payment in this organization.")
    return payment


@organization_required(Role.OWNER)
def checkout_pay(request: HttpRequest, payment_id: int) -> HttpResponse:
    payment = _organization_payment(request, pk=payment_id)
    context: dict[str, object] = {"payment": payment, "total": payment.amount + payment.fee}
    if payment.status == PaymentStatus.PENDING and payment.stripe_payment_intent_id:
        context |= {
            "client_secret": payment_client_secret(payment=payment),
            "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
            "stripe_js_url": settings.STRIPE_JS_URL,
            "return_url": f"{settings.SITE_URL}/billing/stripe/return/{payment.pk}",
        }
    response = render(request, "billing/checkout_pay.html", context)
    if "client_secret" in context and (policy := page_policy(_stripe_sources())):
        response[HEADER] = policy
    return response


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _stripe_sources() -> dict[str, list[str]]:
    """What Stripe.js needs on the pay page (Stripe's documented CSP), from the configured
    hosts too (a fake Stripe in development and tests)."""
    js, api = _origin(settings.STRIPE_JS_URL), _origin(settings.STRIPE_API_BASE)
    return {
        "script-src": [js],
        "frame-src": [js, "https://js.stripe.com", "https://hooks.stripe.com"],
        "connect-src": [api, "https://api.stripe.com"],
        "img-src": ["https://*.stripe.com"],
    }


@organization_required(Role.OWNER)
def checkout_return(request: HttpRequest, payment_id: int) -> HttpResponse:
    """Where Stripe.js sends the browser back; the webhook, not this page, credits."""
    payment = _organization_payment(request, pk=payment_id)
    redirect_status = request.GET.get("redirect_status", "")
    return render(
        request,
        "billing/checkout_return.html",
        {"payment": payment, "redirect_status": redirect_status},
    )
