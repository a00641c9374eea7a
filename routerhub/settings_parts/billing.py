"""Billing settings: fees and top-up limits in USD, starter credits, Stripe."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from routerhub.settings_parts.environment import (
    PRODUCTION,
    ROUTERHUB_ENV,
    _bool,
    _decimal,
    env,
    positive_float,
    positive_int,
)

# Money: fees as fractions, amounts in USD.
TOPUP_FEE_RATE = _decimal("TOPUP_FEE_RATE", default="0.055")
TOPUP_FEE_MINIMUM = _decimal("TOPUP_FEE_MINIMUM", default="0.80")
BYOK_FEE_RATE = _decimal("BYOK_FEE_RATE", default="0.05")
# A charge this many times its hold or more is counted in routerhub_charges_far_over_hold_total
# and logged as an error (a provider counting what the hold does not foresee): it is charged.
BILLING_OVER_HOLD_ALERT_MULTIPLE = _decimal("BILLING_OVER_HOLD_ALERT_MULTIPLE", default="4")
# Each count an organization's own host reports is billed no lower than this share of its
# estimate (flagged usage_floored where one was raised): characters ÷ 4 is rough, and an honest
# tokenizer may count a third fewer; a host reporting 1 token is below any share.
BILLING_OWN_HOST_FLOOR_SHARE = positive_float("BILLING_OWN_HOST_FLOOR_SHARE", 0.5)
if BILLING_OWN_HOST_FLOOR_SHARE > 1:
    raise ImproperlyConfigured("BILLING_OWN_HOST_FLOOR_SHARE must be at most 1")
TOPUP_MIN_AMOUNT = _decimal("TOPUP_MIN_AMOUNT", default="5")
TOPUP_MAX_AMOUNT = _decimal("TOPUP_MAX_AMOUNT", default="10000")
# Automatic top-ups (succeeded or pending) one organization's card is charged within 24 hours.
AUTO_TOPUPS_PER_ORGANIZATION_PER_DAY = positive_int("AUTO_TOPUPS_PER_ORGANIZATION_PER_DAY", 3)
# Key spend windows whose reserved amount is reconciled with their open holds: how often, and
# how many windows a run (billing.window_repair).
KEY_WINDOWS_RECONCILE_SECONDS = positive_int("KEY_WINDOWS_RECONCILE_SECONDS", 300)
KEY_WINDOWS_RECONCILE_BATCH = positive_int("KEY_WINDOWS_RECONCILE_BATCH", 500)
DEMO_CREDITS = _decimal("DEMO_CREDITS", default="5")
# Credits every new organization starts with (one "promotion" ledger entry), so a newcomer can
# send a first request to the demo models without an operator or a card. On in development; 0
# (off) in tests and production unless set, e.g. on a public demo deployment.
STARTER_CREDITS_USD = _decimal(
    "STARTER_CREDITS_USD", default="5" if ROUTERHUB_ENV == "development" else "0"
)
# Starter grants to verified addresses of one registrable email domain (eTLD+1 under an ICANN
# suffix, punycode; its subdomains included, and free ones such as a1.eu.org count as eu.org),
# at most: a catch-all domain confirms any number of addresses for one person. Domains
# where each address is its own person's mailbox are exempt (STARTER_CREDITS_OPEN_DOMAINS).
STARTER_CREDITS_PER_DOMAIN = positive_int("STARTER_CREDITS_PER_DOMAIN", 3)
STARTER_CREDITS_OPEN_DOMAINS = frozenset(
    d.strip().casefold()
    for d in env.list(
        "STARTER_CREDITS_OPEN_DOMAINS",
        default=[
            "gmail.com",
            "outlook.com",
            "hotmail.com",
            "live.com",
            "yahoo.com",
            "icloud.com",
            "me.com",
            "aol.com",
            "proton.me",
            "protonmail.com",
            "gmx.com",
            "gmx.de",
            "web.de",
            "yandex.ru",
            "mail.ru",
            "qq.com",
            "163.com",
            "naver.com",
            "gmx.net",
            "mac.com",
            "pm.me",
            "protonmail.ch",
            "msn.com",
            "hotmail.co.uk",
            "hotmail.fr",
            "outlook.de",
            "yahoo.co.jp",
            "yahoo.co.uk",
            "ymail.com",
            "t-online.de",
            "126.com",
            "yandex.com",
        ],
    )
)
# The window STARTER_CREDITS_PER_DOMAIN counts over, in days: a company domain is not capped
# forever.
STARTER_CREDITS_DOMAIN_WINDOW_DAYS = positive_int("STARTER_CREDITS_DOMAIN_WINDOW_DAYS", 30)

# Stripe top-ups. Card payments are on when BILLING_ENABLED (default: in production), and then
# every key below must be set. STRIPE_API_BASE points the stripe library at a fake server
# (localstripe) in development and tests; STRIPE_JS_URL likewise for the browser library.
BILLING_ENABLED = _bool("BILLING_ENABLED", default=PRODUCTION)
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
# Seconds a signed webhook may be older (or newer, clock skew) than now; Stripe's default.
STRIPE_WEBHOOK_TOLERANCE = env.int("STRIPE_WEBHOOK_TOLERANCE", default=300)
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com").rstrip("/")
STRIPE_JS_URL = env.str("STRIPE_JS_URL", default="https://js.stripe.com/v3/")
if PRODUCTION and BILLING_ENABLED:
    for _name in ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET"):
        if not vars()[_name]:
            raise ImproperlyConfigured(
                f"{_name} must be set when ROUTERHUB_ENV=production and BILLING_ENABLED"
            )
