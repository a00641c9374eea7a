"""Security headers: HSTS in production (sent only over HTTPS), nosniff, the Referrer-Policy and
frame denial on every Django response, and the Content-Security-Policy of HTML pages
(``routerhub/security_headers.py``). README, "Security headers"."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from routerhub.settings_parts.environment import PRODUCTION, _bool, env

# Django's SecurityMiddleware adds Strict-Transport-Security only to responses served over HTTPS
# (``request.is_secure()``: X-Forwarded-Proto from the proxy in production), never on plain HTTP.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if PRODUCTION else 0)
if SECURE_HSTS_SECONDS < 0:
    raise ImproperlyConfigured("SECURE_HSTS_SECONDS must not be negative")
# Off by default: a subdomain served over plain HTTP (or by someone else) would become unreachable.
SECURE_HSTS_INCLUDE_SUBDOMAINS = _bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = _bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
_REFERRER_POLICIES = {
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
}
SECURE_REFERRER_POLICY = env.str("SECURE_REFERRER_POLICY", default="same-origin")
if SECURE_REFERRER_POLICY not in _REFERRER_POLICIES:
    raise ImproperlyConfigured(
        f"SECURE_REFERRER_POLICY must be one of {sorted(_REFERRER_POLICIES)}, "
        f"not {SECURE_REFERRER_POLICY!r}"
    )
X_FRAME_OPTIONS = "DENY"

# Every script and style of the dashboard is a file under /static/ (no inline code, event
# handlers or style attributes: tests/browser fail on any violation), so pages need nothing
# but 'self'. ``data:`` images: the favicon. The checkout page adds Stripe's origins for itself.
_DEFAULT_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# Empty: no policy. Sent on HTML responses only, outside CSP_EXCLUDED_PATHS (the admin's and the
# API reference's pages are third-party templates with inline code).
CONTENT_SECURITY_POLICY = env.str("CONTENT_SECURITY_POLICY", default=_DEFAULT_CSP).strip()
if not all(" " <= char <= "~" for char in CONTENT_SECURITY_POLICY):
    raise ImproperlyConfigured("CONTENT_SECURITY_POLICY must be printable ASCII on one line")
CSP_EXCLUDED_PATHS = ("/admin/", "/api/docs/")

# /metrics (process metrics: no organization's data). METRICS_TOKEN set: a scraper must send
# ``Authorization: Bearer <token>`` (401 otherwise). Unset: public where METRICS_PUBLIC (default
# outside production, so `make run` and tests scrape freely), else 404 (production's default).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="").strip()
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters")
METRICS_PUBLIC = _bool("METRICS_PUBLIC", default=not PRODUCTION)
