"""Gateway (/v1) and provider settings: credentials, timeouts, breaker, caches, stored responses."""

from __future__ import annotations

import base64
import hashlib

from django.core.exceptions import ImproperlyConfigured

from routerhub.settings_parts.environment import (
    PRODUCTION,
    _bool,
    _dev_secret,
    _number,
    env,
    positive_float,
    positive_int,
)

# Platform credentials per provider, by the environment variable a catalog provider names.
PROVIDER_API_KEY_ENVS = [
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "MISTRAL_API_KEY",
    "GROQ_API_KEY",
    "TOGETHER_API_KEY",
    "DEEPSEEK_API_KEY",
    "CUSTOM_PROVIDER_API_KEY",
    *env.list("PROVIDER_API_KEY_ENVS_EXTRA", default=[]),
]
PROVIDER_API_KEYS = {name: env.str(name, default="") for name in PROVIDER_API_KEY_ENVS}
# Fernet keys for bring-your-own provider keys: the first encrypts, all decrypt (rotation).
PROVIDER_KEYS_ENCRYPTION_KEYS = env.list("PROVIDER_KEYS_ENCRYPTION_KEYS", default=[])
if not PROVIDER_KEYS_ENCRYPTION_KEYS:
    if PRODUCTION:
        raise ImproperlyConfigured(
            "PROVIDER_KEYS_ENCRYPTION_KEYS must be set when ROUTERHUB_ENV=production"
        )
    import base64
    import hashlib

    PROVIDER_KEYS_ENCRYPTION_KEYS = [
        base64.urlsafe_b64encode(
            hashlib.sha256(_dev_secret("provider_keys_encryption_key").encode()).digest()
        ).decode()
    ]
# Upstream timeouts in seconds: connect, first byte (and between stream chunks), whole request.
GATEWAY_CONNECT_TIMEOUT = env.float("GATEWAY_CONNECT_TIMEOUT", default=5.0)
GATEWAY_FIRST_BYTE_TIMEOUT = env.float("GATEWAY_FIRST_BYTE_TIMEOUT", default=60.0)
GATEWAY_TOTAL_TIMEOUT = env.float("GATEWAY_TOTAL_TIMEOUT", default=600.0)
PIPELINE_MAX_STEPS = env.int("PIPELINE_MAX_STEPS", default=5)  # provider calls of one pipeline
PIPELINE_MAX_BRANCHES = env.int("PIPELINE_MAX_BRANCHES", default=5)  # of one parallel pipeline
# Seconds a parallel branch may take before it is cancelled (a pipeline may set its own).
PIPELINE_BRANCH_TIMEOUT = env.float("PIPELINE_BRANCH_TIMEOUT", default=60.0)
# Seconds a regex gate may run (in a worker process, killed past it: the gate then fails).
PIPELINE_REGEX_TIMEOUT = env.float("PIPELINE_REGEX_TIMEOUT", default=0.5)
# Gate worker processes per gateway worker (started on first use, ~15 MB each): checks beyond
# them wait, so a tenant's runaway patterns hold at most this many at once.
PIPELINE_GATE_WORKERS = env.int("PIPELINE_GATE_WORKERS", default=4)
if PIPELINE_GATE_WORKERS < 1:
    raise ImproperlyConfigured("PIPELINE_GATE_WORKERS must be at least 1")
GATEWAY_MAX_CONNECTIONS = env.int("GATEWAY_MAX_CONNECTIONS", default=1000)
# Of those, what one organization's own hosts (a provider key's base_url) may hold at once per
# process: a tenant whose host stalls cannot take every connection (routing/tenant_slots.py).
# Per organization, not per actor: one actor may own several organizations (README).
GATEWAY_TENANT_MAX_CONNECTIONS = env.int(
    "GATEWAY_TENANT_MAX_CONNECTIONS", default=max(1, GATEWAY_MAX_CONNECTIONS // 16)
)
if GATEWAY_TENANT_MAX_CONNECTIONS < 1:
    raise ImproperlyConfigured("GATEWAY_TENANT_MAX_CONNECTIONS must be at least 1")
# Seconds a request waits for one of those slots before its attempt is refused (never longer than
# its pool timeout, GATEWAY_CONNECT_TIMEOUT, which the wait is taken off).
GATEWAY_TENANT_SLOT_WAIT_SECONDS = env.float(
    "GATEWAY_TENANT_SLOT_WAIT_SECONDS", default=GATEWAY_CONNECT_TIMEOUT
)
if GATEWAY_TENANT_SLOT_WAIT_SECONDS < 0:
    raise ImproperlyConfigured("GATEWAY_TENANT_SLOT_WAIT_SECONDS must not be negative")
# At a worker's shutdown, seconds it waits for the handlers it cancelled to hand their usage over
# (and again for those hand-overs), well below uvicorn/gunicorn's graceful timeout (30 s).
GATEWAY_SHUTDOWN_DRAIN_SECONDS = env.float("GATEWAY_SHUTDOWN_DRAIN_SECONDS", default=5.0)
if GATEWAY_SHUTDOWN_DRAIN_SECONDS < 0:
    raise ImproperlyConfigured("GATEWAY_SHUTDOWN_DRAIN_SECONDS must not be negative")
# The gateway's own async PostgreSQL pool (per worker) for the credit reservation.
GATEWAY_DB_CONNECTIONS = env.int("GATEWAY_DB_CONNECTIONS", default=4)
GATEWAY_DB_TIMEOUT = env.float("GATEWAY_DB_TIMEOUT", default=3.0)
# Who settles the usage stream (with Redis): "worker" — a task in every gateway process (the
# default: one process does everything); "process" — a dedicated `manage.py usage_settler`, which
# deploy/gunicorn.conf.py (`make serve`) starts beside the workers.
USAGE_SETTLER = env.str("USAGE_SETTLER", default="worker")
if USAGE_SETTLER not in {"worker", "process"}:
    raise ImproperlyConfigured(
        f"USAGE_SETTLER must be 'worker' or 'process', not {USAGE_SETTLER!r}"
    )
# Days a usage record keeps the prompt text of an organization that opted into prompt logging;
# older prompts are blanked hourly (billing.expire_prompts). 0 keeps them (feedback retraining
# reads them: routing/feedback.py).
USAGE_PROMPT_RETENTION_DAYS = env.int("USAGE_PROMPT_RETENTION_DAYS", default=0)
# Whole months of raw usage records kept before the current one; older monthly partitions are
# dropped daily (billing.partitions_ensure). 0 keeps every month (rollups keep totals either way).
USAGE_RECORD_RETENTION_MONTHS = env.int("USAGE_RECORD_RETENTION_MONTHS", default=0)
GATEWAY_MAX_BODY_BYTES = env.int("GATEWAY_MAX_BODY_BYTES", default=20 * 1024 * 1024)
# How slowly any request body (/v1 and Django's paths alike, routerhub.body_limits.BodyPace) may
# arrive, 408 past it: uvicorn has no deadline of its own for a body. A read that brings nothing
# for REQUEST_BODY_IDLE_SECONDS ends it; and the whole body must be in by the later of
# REQUEST_BODY_GRACE_SECONDS and its length at REQUEST_BODY_MIN_BYTES_PER_SECOND from the
# request's start (20 MB at 64 KiB/s is 305 s: a 2 Mbit/s link is not refused).
REQUEST_BODY_IDLE_SECONDS = positive_float("REQUEST_BODY_IDLE_SECONDS", 30.0)
REQUEST_BODY_GRACE_SECONDS = positive_float("REQUEST_BODY_GRACE_SECONDS", 60.0)
REQUEST_BODY_MIN_BYTES_PER_SECOND = positive_float("REQUEST_BODY_MIN_BYTES_PER_SECOND", 64 * 1024)
# The most one upstream answer (whole, streamed, or an error) may be once decoded: a tenant's own
# host could otherwise send gigabytes, or a few kilobytes of gzip that decode to them. It must fit
# the largest answer the API allows: /v1/embeddings takes 2,048 inputs, at 3,072 dimensions and up
# to ~32 bytes a float as (pretty-printed) JSON that is ~192 MiB; 64 MiB refused it (a 502).
GATEWAY_MAX_RESPONSE_BYTES = env.int("GATEWAY_MAX_RESPONSE_BYTES", default=256 * 1024 * 1024)
# The most one event of an upstream stream may be (a stream is read an event at a time): one that
# never ends was a buffer growing to GATEWAY_MAX_RESPONSE_BYTES. Chunks are a few KB (~1.7 KB a
# token with top_logprobs 20); 16 MiB holds a whole long answer or tool call sent as one event.
GATEWAY_MAX_SSE_EVENT_BYTES = env.int("GATEWAY_MAX_SSE_EVENT_BYTES", default=16 * 1024 * 1024)
# /v1/responses with store (the default): days an answer stays retrievable and continuable by
# previous_response_id (0: nothing is stored), and the largest stored conversation (JSON bytes);
# a larger one is answered with store: false.
RESPONSES_RETENTION_DAYS = env.int("RESPONSES_RETENTION_DAYS", default=30)
RESPONSES_STORE_MAX_BYTES = env.int("RESPONSES_STORE_MAX_BYTES", default=1024 * 1024)
COMPLETIONS_MAX_PROMPTS = env.int("COMPLETIONS_MAX_PROMPTS", default=16)  # per /v1/completions
# max_tokens sent upstream (and reserved for) when the client gives none.
GATEWAY_DEFAULT_MAX_TOKENS = env.int("GATEWAY_DEFAULT_MAX_TOKENS", default=4096)
# A stream to a model that reasons unseen (catalog hidden_reasoning) cut short before its usage
# report is billed this many output tokens a second since its request was sent (an endpoint's
# output_tokens_per_second wins), at most its max_tokens: below the published speeds of OpenAI's
# o-series and gpt-5 and Gemini 2.5 (~80-250/s), so a client is not billed more than was made.
GATEWAY_REASONING_TOKENS_PER_SECOND = positive_int("GATEWAY_REASONING_TOKENS_PER_SECOND", 50)
# Circuit breaker: skip an endpoint after N failures within the window, for the cooldown.
GATEWAY_BREAKER_FAILURES = env.int("GATEWAY_BREAKER_FAILURES", default=3)
GATEWAY_BREAKER_WINDOW = env.float("GATEWAY_BREAKER_WINDOW", default=10.0)
GATEWAY_BREAKER_COOLDOWN = env.float("GATEWAY_BREAKER_COOLDOWN", default=10.0)
CATALOG_CACHE_TTL = env.float("CATALOG_CACHE_TTL", default=1.0)
# Seconds a router row (its active version) is cached per process: activation and rollback
# reach every worker within this time.
ROUTER_CACHE_TTL = env.float("ROUTER_CACHE_TTL", default=0.5)
# Router selects (/api/v1/routers/<slug>/select, Not Diamond's modelSelect) do not count against
# a key's rpm (SDKs select before every call) but have a bucket of their own per key: the key's
# rpm times this factor, or, for a key without rpm, this many a minute (0: unlimited).
ROUTER_SELECT_RPM_FACTOR = positive_int("ROUTER_SELECT_RPM_FACTOR", default=10)
ROUTER_SELECT_RPM_DEFAULT = int(
    _number("ROUTER_SELECT_RPM_DEFAULT", "6000", int, "a whole number", 0, "must not be negative")
)
# Seconds the rate limiter leaves Redis alone after a connection error or timeout (it fails open
# meanwhile), before one request probes it again: without it every request of an outage paid up
# to REDIS_CONNECT_TIMEOUT (routing/gateway/limits_redis.py).
RATE_LIMIT_REDIS_BACKOFF_SECONDS = positive_float("RATE_LIMIT_REDIS_BACKOFF_SECONDS", 5.0)
# Connections each process's rate limiter (its event loop's client) opens to Redis at most; a
# lease call finding them all busy waits up to RATE_LIMIT_REDIS_POOL_WAIT_SECONDS, then its
# request is counted in this process alone, without backing Redis off
# (routing/gateway/limits_redis.py). Was unbounded.
RATE_LIMIT_REDIS_MAX_CONNECTIONS = positive_int("RATE_LIMIT_REDIS_MAX_CONNECTIONS", 64)
# Seconds a lease call waits for a free connection of that pool. Was REDIS_SOCKET_TIMEOUT (5 s):
# a flood of distinct keys made every request wait it, then admitted them uncounted.
RATE_LIMIT_REDIS_POOL_WAIT_SECONDS = positive_float("RATE_LIMIT_REDIS_POOL_WAIT_SECONDS", 0.1)
# Seconds a pipeline's active version is cached per process (routing.pipeline_rows): a new
# version or a deletion reaches every worker within this time.
PIPELINE_CACHE_TTL = env.float("PIPELINE_CACHE_TTL", default=0.5)
# Router lifecycle (README "Router lifecycle"): caps on what a router's own settings may ask
# for. A shadow version decides on at most this share of requests, and on at most this many per
# second per serving process (~1 ms of CPU each, after the answer is sent); exploration serves a
# model other than the ranking's first on at most this share.
ROUTER_SHADOW_MAX_SHARE = env.float("ROUTER_SHADOW_MAX_SHARE", default=1.0)
ROUTER_SHADOW_MAX_PER_SECOND = env.int("ROUTER_SHADOW_MAX_PER_SECOND", default=50)
ROUTER_EXPLORATION_MAX = env.float("ROUTER_EXPLORATION_MAX", default=0.5)
# The experiment report reads at most this many of the latest logged decisions; the promotion
# rule checks at most this many routers per run (every ROUTER_PROMOTION_INTERVAL seconds) and
# counts a candidate's expected cost as "equal" within this fraction of the active version's.
ROUTER_OPE_MAX_DECISIONS = env.int("ROUTER_OPE_MAX_DECISIONS", default=20_000)
ROUTER_PROMOTION_MAX_ROUTERS = env.int("ROUTER_PROMOTION_MAX_ROUTERS", default=50)
ROUTER_PROMOTION_INTERVAL = env.float("ROUTER_PROMOTION_INTERVAL", default=300.0)
ROUTER_PROMOTION_COST_TOLERANCE = env.float("ROUTER_PROMOTION_COST_TOLERANCE", default=0.02)
# Provider base URLs chosen by tenants (BYOK `base_url`) may resolve to private, loopback or
# link-local addresses only when the operator allows it (routing.egress).
ALLOW_PRIVATE_PROVIDER_URLS = _bool("ALLOW_PRIVATE_PROVIDER_URLS", default=False)
# Saving a provider key's base_url or a webhook URL resolves its host inside the web request:
# a lookup not answered within this many seconds is abandoned and the save refused (400).
URL_CHECK_DNS_TIMEOUT_SECONDS = env.float("URL_CHECK_DNS_TIMEOUT_SECONDS", default=3.0)
if URL_CHECK_DNS_TIMEOUT_SECONDS <= 0:
    raise ImproperlyConfigured("URL_CHECK_DNS_TIMEOUT_SECONDS must be positive")
# The gateway's connect-time lookups of tenants' own hosts (routing/resolvers.py): a pool of its
# own per process, apart from the save-time checks' 4 threads; one organization holds at most
# GATEWAY_DNS_PER_ORGANIZATION of its threads. Platform providers' hosts never use it.
GATEWAY_DNS_THREADS = env.int("GATEWAY_DNS_THREADS", default=32)
GATEWAY_DNS_PER_ORGANIZATION = env.int("GATEWAY_DNS_PER_ORGANIZATION", default=2)
if not 1 <= GATEWAY_DNS_PER_ORGANIZATION <= GATEWAY_DNS_THREADS:
    raise ImproperlyConfigured(
        "GATEWAY_DNS_PER_ORGANIZATION must be at least 1 and at most GATEWAY_DNS_THREADS"
    )
# The local fake upstream that `make run` starts and the demo provider points at.
DEMO_UPSTREAM_URL = env.str("DEMO_UPSTREAM_URL", default="http://127.0.0.1:8001").rstrip("/")
# Budget-aware routing (README "Budget-aware routing"): the share of a key's limit window below
# which router requests are unchanged; the tradeoff reaches 1 (cheapest) at the limit.
BUDGET_ROUTING_START = env.float("BUDGET_ROUTING_START", default=0.5)
# The share of a key's limit window (spent plus held) that emits `budget.threshold`, once a window.
BUDGET_THRESHOLD_SHARE = env.float("BUDGET_THRESHOLD_SHARE", default=0.8)
# Online calibration from feedback (README "Online learning from feedback"): the weight one
# contributor (key, or dashboard user) adds per router per UTC day (W), the prior weight that
# shrinks each bias toward 0 (K), and the largest bias in score units (B).
FEEDBACK_CALIBRATION_DAILY_WEIGHT = env.float("FEEDBACK_CALIBRATION_DAILY_WEIGHT", default=3.0)
FEEDBACK_CALIBRATION_PRIOR_WEIGHT = env.float("FEEDBACK_CALIBRATION_PRIOR_WEIGHT", default=27.0)
FEEDBACK_CALIBRATION_MAX_BIAS = env.float("FEEDBACK_CALIBRATION_MAX_BIAS", default=0.15)
