"""``POST /billing/stripe/webhook``: Stripe's signed events; nothing is applied unless verified."""

from __future__ import annotations

import logging
import time

import stripe
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.stripe.events import stripe_event_handle
from routerhub.errors import error_json_response

logger = logging.getLogger(__name__)


@csrf_exempt  # Stripe cannot send a CSRF token; the signature authenticates the request.
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        # An empty secret would make any HMAC "valid"; refuse, and Stripe retries later.
        logger.error("STRIPE_WEBHOOK_SECRET is not set; refusing a Stripe webhook")
        return error_json_response(503, "payments_unavailable", "Webhooks are not configured.")
    header = request.headers.get("Stripe-Signature")
    tolerance = settings.STRIPE_WEBHOOK_TOLERANCE
    try:
        event = stripe.Webhook.construct_event(request.body, header, secret, tolerance=tolerance)
    except stripe.SignatureVerificationError:
        return error_json_response(400, "bad_request", "Invalid Stripe signature.")
    except ValueError:
        return error_json_response(400, "bad_request", "The payload is not a Stripe event.")
    if _signed_at(header or "") > time.time() + tolerance:
        # The stripe library refuses only old timestamps; a signature dated in the future would
        # stay replayable until then.
        return error_json_response(400, "bad_request", "Invalid Stripe signature.")
    outcome = stripe_event_handle(event=event.to_dict())
    return JsonResponse({"received": True, "outcome": outcome})


def _signed_at(header: str) -> int:
    """The header's ``t=`` (the first, as the stripe library reads it), verified by now."""
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            return int(value)
    return 0
