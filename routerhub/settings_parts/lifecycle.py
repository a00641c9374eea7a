"""Router lifecycle settings: signed webhooks (delivery, retries, egress) and drift alerts."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from routerhub.settings_parts.environment import PRODUCTION, _bool, env, positive_int

# --- Webhooks (webhooks/) -------------------------------------------------------------------------
# Attempts per delivery (the first one included); past it the delivery is marked failed for good.
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
# Retry n waits BASE · 2^(n-1) seconds, at most MAX_DELAY: 30 s, 1 min, 2 min … about 1 h in all.
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=30.0)
WEBHOOK_RETRY_MAX_DELAY_SECONDS = env.float("WEBHOOK_RETRY_MAX_DELAY_SECONDS", default=3600.0)
# One attempt: connect, read and write timeouts each, and the whole exchange at most twice that.
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# Bytes of a receiver's answer that are read (and kept in the delivery log); the rest is dropped.
WEBHOOK_RESPONSE_MAX_BYTES = env.int("WEBHOOK_RESPONSE_MAX_BYTES", default=1024)
# A receiver rejects a signature older than this (the verification snippet's default, seconds).
WEBHOOK_SIGNATURE_TOLERANCE_SECONDS = env.int("WEBHOOK_SIGNATURE_TOLERANCE_SECONDS", default=300)
WEBHOOK_ENDPOINTS_PER_ORGANIZATION = env.int("WEBHOOK_ENDPOINTS_PER_ORGANIZATION", default=16)
# Days a finished (succeeded or failed) delivery stays in the log; an hourly task deletes older
# ones in bounded batches (webhooks.services.webhook_deliveries_prune). Pending ones stay.
WEBHOOK_DELIVERY_RETENTION_DAYS = positive_int("WEBHOOK_DELIVERY_RETENTION_DAYS", 30)
# Private, loopback and link-local targets (routing.egress) are refused in production unless
# this is set; development and tests allow them (a receiver on 127.0.0.1).
WEBHOOK_ALLOW_PRIVATE_URLS = _bool("WEBHOOK_ALLOW_PRIVATE_URLS", default=not PRODUCTION)

# --- Drift (training/drift.py) ----------------------------------------------------------------------
# Share of routed prompts whose features are sampled for the drift check (0 turns sampling off).
DRIFT_SAMPLE_RATE = env.float("DRIFT_SAMPLE_RATE", default=0.05)
if not 0.0 <= DRIFT_SAMPLE_RATE <= 1.0:
    raise ImproperlyConfigured("DRIFT_SAMPLE_RATE must be between 0 and 1")
# Live samples a check needs before it scores a router (fewer wait for the next check).
DRIFT_MIN_SAMPLES = env.int("DRIFT_MIN_SAMPLES", default=200)
# Samples kept per router version in Redis between checks (older ones are dropped).
DRIFT_MAX_SAMPLES = env.int("DRIFT_MAX_SAMPLES", default=5000)
# Mean population stability index over the featurizer's dimensions above which a router drifts.
DRIFT_THRESHOLD = env.float("DRIFT_THRESHOLD", default=0.25)
DRIFT_CHECK_SECONDS = env.float("DRIFT_CHECK_SECONDS", default=900.0)
