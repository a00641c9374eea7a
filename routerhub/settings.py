"""RouterHub settings: every value comes from the environment, with embedded defaults for one machine.

With nothing set, the project runs on SQLite (WAL), local file storage, an in-process cache and a
Celery worker that uses a filesystem broker (no services). With ``DATABASE_URL``, ``REDIS_URL`` and
``CELERY_BROKER_URL`` set, the same code runs on Postgres, Redis and a real broker. In production
(``ROUTERHUB_ENV=production``) missing secrets stop the process at boot.
"""

from __future__ import annotations

import os
import secrets
from decimal import Decimal, InvalidOperation
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

ROUTERHUB_ENV = env.str("ROUTERHUB_ENV", default="development")
if ROUTERHUB_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(
        f"ROUTERHUB_ENV must be development, test or production, not {ROUTERHUB_ENV!r}"
    )
PRODUCTION = ROUTERHUB_ENV == "production"
VAR_DIR = Path(env.str("ROUTERHUB_VAR_DIR", default=str(BASE_DIR / "var")))


def _dev_secret(name: str) -> str:
    """A per-checkout random secret kept in var/ (gitignored), so nothing secret is committed."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / f".{name}"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _bool(name: str, default: bool) -> bool:
    """A strict boolean: a typo such as DEBUG=nope stops the boot instead of meaning False."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (1/0, yes/no, on/off), not {raw!r}")


def _decimal(name: str, default: str) -> Decimal:
    raw = env.str(name, default=default)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal number, not {raw!r}") from None
    if value < 0:
        raise ImproperlyConfigured(f"{name} must not be negative")
    return value


def _secret(name: str) -> str:
    value = str(env.str(name, default=""))
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(f"{name} must be set when ROUTERHUB_ENV=production")
    return _dev_secret(name.lower())


SECRET_KEY = _secret("SECRET_KEY")
# HMAC pepper for API key digests; rotating it invalidates every key, so it is separate from
# SECRET_KEY (which may rotate with sessions).
API_KEY_PEPPER = _secret("API_KEY_PEPPER")
DEBUG = _bool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["*"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when ROUTERHUB_ENV=production")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Unset, the URLs pages show (quickstarts, snippets) are built from each request's own scheme
# and host, so a server reached at another address shows that address; emails sent outside a
# request use SITE_URL's default.
SITE_URL_SET = bool(os.environ.get("SITE_URL"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "routerhub",
    "accounts",
    "billing",
    "routing",
    "training",
]

MIDDLEWARE = [
    "routerhub.middleware.RequestIdMiddleware",
    "routerhub.middleware.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.CurrentOrganizationMiddleware",
    "routerhub.middleware.ApiErrorMiddleware",
]

ROOT_URLCONF = "routerhub.urls"
WSGI_APPLICATION = "routerhub.wsgi.application"
ASGI_APPLICATION = "routerhub.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "routerhub" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.organization",
                "routerhub.context_processors.site",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker writes; the busy timeout absorbs short
    # write locks instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    # One bounded pool of connections per process (psycopg_pool, README "Database connections").
    # Persistent per-thread connections (CONN_MAX_AGE > 0) leak under ASGI: Django runs each
    # request's sync code in a thread of its own, and a dead thread's connection stayed open
    # until a (rare, tuned) garbage collection. DATABASE_POOL_MAX_SIZE=0 turns the pool off:
    # each request then opens and closes its own connection. Code that uses the ORM in a thread
    # of its own must close its connection or run in routerhub.db.DatabaseThreadPool: one kept
    # by a thread that ends is lost to the pool. The test settings leave the pool off because
    # tests do that (sync code running async code on a fresh event loop, whose executor's
    # threads never give theirs back); the production server tests run with it.
    DATABASE_POOL_MAX_SIZE = env.int(
        "DATABASE_POOL_MAX_SIZE", default=0 if ROUTERHUB_ENV == "test" else 8
    )
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if DATABASE_POOL_MAX_SIZE > 0:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": min(2, DATABASE_POOL_MAX_SIZE),
            "max_size": DATABASE_POOL_MAX_SIZE,
            # Seconds a request waits for a free connection before its query fails: short, so
            # a database outage still fails requests fast.
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=3.0),
            # A failing reconnection gives up after this long and the next caller starts a new
            # one at once: without it the retries back off exponentially, and after an outage
            # the pool would come back seconds after the database.
            "reconnect_timeout": 2.0,
            # Connections above min_size idle this long are closed.
            "max_idle": 60.0,
        }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and Redis --------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "rh",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth and accounts ------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if ROUTERHUB_ENV == "test":
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_REDIRECT_URL = "/dashboard/"
LOGIN_URL = "/accounts/login/"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env.str("ACCOUNT_EMAIL_VERIFICATION", default="mandatory")
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
# Confirming the address (in the browser that signed up) signs the person in: no second login.
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[RouterHub] "
# Brute-force limits (allauth counts them in the cache, Redis when REDIS_URL is set): failed
# logins 5 per email per 5 minutes and 10 per IP per minute; the rest as allauth ships them.
ACCOUNT_RATE_LIMITS = {
    "login_failed": "10/m/ip,5/5m/key",
    "login": "30/m/ip",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
}
# Behind N reverse proxies the client IP is the Nth address from the right of X-Forwarded-For;
# with 0 (direct) it is REMOTE_ADDR. Wrong here, every client shares the proxy's IP limit.
ALLAUTH_TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# --- Email ------------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="RouterHub <noreply@routerhub.local>")

# --- Static and media -------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
_storage_backend = env.str("STORAGE_BACKEND", default="local")
if _storage_backend not in {"local", "s3"}:
    raise ImproperlyConfigured("STORAGE_BACKEND must be 'local' or 's3'")
STORAGES = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage"
        if _storage_backend == "s3"
        else "django.core.files.storage.FileSystemStorage",
    },
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
}
if _storage_backend == "s3":
    AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME")
    AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default=None)
WHITENOISE_USE_FINDERS = not PRODUCTION

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- REST framework and OpenAPI ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "accounts.authentication.CsrfSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.IsOrganizationMember"],
    "DEFAULT_PAGINATION_CLASS": "routerhub.pagination.ResultsPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "routerhub.errors.drf_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # OPTIONS is not part of the API (no CORS); DRF's metadata would describe serializers some
    # views do not declare, and fail doing so.
    "DEFAULT_METADATA_CLASS": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "RouterHub API",
    "DESCRIPTION": "Platform API of RouterHub. Inference lives under /v1 (OpenAI-compatible).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "routerhub.schema.add_error_responses",
    ],
}

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_TASK_ALWAYS_EAGER = _bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_FILESYSTEM_BROKER_DIR = VAR_DIR / "celery"

# --- Gateway (/v1) and providers --------------------------------------------------------------
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
GATEWAY_MAX_CONNECTIONS = env.int("GATEWAY_MAX_CONNECTIONS", default=1000)
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
GATEWAY_MAX_BODY_BYTES = env.int("GATEWAY_MAX_BODY_BYTES", default=20 * 1024 * 1024)
# /v1/responses with store (the default): days an answer stays retrievable and continuable by
# previous_response_id (0: nothing is stored), and the largest stored conversation (JSON bytes);
# a larger one is answered with store: false.
RESPONSES_RETENTION_DAYS = env.int("RESPONSES_RETENTION_DAYS", default=30)
RESPONSES_STORE_MAX_BYTES = env.int("RESPONSES_STORE_MAX_BYTES", default=1024 * 1024)
COMPLETIONS_MAX_PROMPTS = env.int("COMPLETIONS_MAX_PROMPTS", default=16)  # per /v1/completions
# max_tokens sent upstream (and reserved for) when the client gives none.
GATEWAY_DEFAULT_MAX_TOKENS = env.int("GATEWAY_DEFAULT_MAX_TOKENS", default=4096)
# Circuit breaker: skip an endpoint after N failures within the window, for the cooldown.
GATEWAY_BREAKER_FAILURES = env.int("GATEWAY_BREAKER_FAILURES", default=3)
GATEWAY_BREAKER_WINDOW = env.float("GATEWAY_BREAKER_WINDOW", default=10.0)
GATEWAY_BREAKER_COOLDOWN = env.float("GATEWAY_BREAKER_COOLDOWN", default=10.0)
CATALOG_CACHE_TTL = env.float("CATALOG_CACHE_TTL", default=1.0)
# Seconds a router row (its active version) is cached per process: activation and rollback
# reach every worker within this time.
ROUTER_CACHE_TTL = env.float("ROUTER_CACHE_TTL", default=0.5)
# Provider base URLs chosen by tenants (BYOK `base_url`) may resolve to private, loopback or
# link-local addresses only when the operator allows it (routing.egress).
ALLOW_PRIVATE_PROVIDER_URLS = _bool("ALLOW_PRIVATE_PROVIDER_URLS", default=False)
# The local fake upstream that `make run` starts and the demo provider points at.
DEMO_UPSTREAM_URL = env.str("DEMO_UPSTREAM_URL", default="http://127.0.0.1:8001").rstrip("/")

# --- Datasets and training ----------------------------------------------------------------------
DATASET_MAX_BYTES = env.int("DATASET_MAX_BYTES", default=200 * 1024 * 1024)
DATASET_MAX_ROWS = env.int("DATASET_MAX_ROWS", default=500_000)
DATASET_MAX_MODELS = env.int("DATASET_MAX_MODELS", default=64)
DATASET_MAX_CELL_CHARS = env.int("DATASET_MAX_CELL_CHARS", default=100_000)
DATASET_MIN_ROWS = env.int("DATASET_MIN_ROWS", default=25)
DATASET_MAX_COLUMNS = env.int("DATASET_MAX_COLUMNS", default=1000)
# A CSV header line longer than this is refused without parsing the rest of the file.
DATASET_MAX_HEADER_BYTES = env.int("DATASET_MAX_HEADER_BYTES", default=256 * 1024)
# A Parquet file's data once decompressed and decoded (its footer declares the first part).
DATASET_MAX_DECODED_BYTES = env.int("DATASET_MAX_DECODED_BYTES", default=512 * 1024 * 1024)
# Address space a task may add to its worker process (RLIMIT_AS while it runs): past it the task
# gets a MemoryError and records why, instead of the kernel killing the pod (training's is 8 GiB).
DATASET_VALIDATION_MEMORY_BYTES = env.int(
    "DATASET_VALIDATION_MEMORY_BYTES", default=3 * 1024 * 1024 * 1024
)
TRAINING_MEMORY_BYTES = env.int("TRAINING_MEMORY_BYTES", default=6 * 1024 * 1024 * 1024)
# A pool process whose resident memory passed this after a task is replaced (Celery, in KiB).
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env.int(
    "CELERY_WORKER_MAX_MEMORY_PER_CHILD", default=2 * 1024 * 1024
)
# Training runs queued or running at once per organization (one per router in any case).
TRAINING_MAX_ACTIVE_RUNS_PER_ORGANIZATION = env.int(
    "TRAINING_MAX_ACTIVE_RUNS_PER_ORGANIZATION", default=4
)
TRAINING_SOFT_TIME_LIMIT = env.int("TRAINING_SOFT_TIME_LIMIT", default=1800)
TRAINING_HARD_TIME_LIMIT = env.int(
    "TRAINING_HARD_TIME_LIMIT", default=TRAINING_SOFT_TIME_LIMIT + 120
)
TRAINING_HEARTBEAT_STALE_SECONDS = env.int("TRAINING_HEARTBEAT_STALE_SECONDS", default=120)

# --- Request bodies (Django's paths; /v1 has GATEWAY_MAX_BODY_BYTES) ------------------------------
# routerhub/body_limits.py refuses a larger body with 413 before Django reads it; the dataset
# upload paths take DATASET_MAX_BYTES more. Django's own checks agree: form fields and JSON bodies
# stay under the same limit, and any body within it is kept in memory; only a dataset upload
# larger than that is spooled to FILE_UPLOAD_TEMP_DIR (the system's temporary directory).
REQUEST_MAX_BODY_BYTES = env.int("REQUEST_MAX_BODY_BYTES", default=1024 * 1024)
# Requests per minute of each person's dashboard playground key (0: no limit), set when the key
# is made; like any key's, changeable with PATCH /api/v1/keys/<id>.
PLAYGROUND_RPM = env.int("PLAYGROUND_RPM", default=60)
DATA_UPLOAD_MAX_MEMORY_SIZE = REQUEST_MAX_BODY_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * REQUEST_MAX_BODY_BYTES

# --- RouterHub ----------------------------------------------------------------------------------
API_KEY_CACHE_TTL = env.float("API_KEY_CACHE_TTL", default=1.0)
ORGANIZATION_SESSION_KEY = "current_organization_id"
# Apps that accounts must not import act on a new organization through these (called with
# organization=...) in organization_create's transaction: billing grants STARTER_CREDITS_USD.
ORGANIZATION_CREATED_HOOKS: list[str] = ["billing.services.starter_credits_grant"]
# Training's pages flag model ids that are not catalog models through routing's catalog (routing
# imports training, not the other way): ids -> {unknown id: similar catalog ids}.
MODEL_CATALOG_CHECK = "routing.selectors.catalog_unknown_ids"
MODEL_CATALOG_IDS = "routing.selectors.catalog_model_ids"
# The Keys page shows what each key spent through billing (accounts does not import billing).
KEY_SPEND = "billing.key_spend.key_spend"
# Callables run by `manage.py seed_demo` with the demo organization, in order.
DEMO_SEEDERS: list[str] = [
    "routing.demo.seed_demo_provider",
    "billing.demo.seed_demo_credits",
    "training.demo.seed_demo_router",
    "billing.demo.seed_demo_usage",
]

# Money: fees as fractions, amounts in USD.
TOPUP_FEE_RATE = _decimal("TOPUP_FEE_RATE", default="0.055")
TOPUP_FEE_MINIMUM = _decimal("TOPUP_FEE_MINIMUM", default="0.80")
BYOK_FEE_RATE = _decimal("BYOK_FEE_RATE", default="0.05")
TOPUP_MIN_AMOUNT = _decimal("TOPUP_MIN_AMOUNT", default="5")
TOPUP_MAX_AMOUNT = _decimal("TOPUP_MAX_AMOUNT", default="10000")
DEMO_CREDITS = _decimal("DEMO_CREDITS", default="5")
# Credits every new organization starts with (one "promotion" ledger entry), so a newcomer can
# send a first request to the demo models without an operator or a card. On in development; 0
# (off) in tests and production unless set, e.g. on a public demo deployment.
STARTER_CREDITS_USD = _decimal(
    "STARTER_CREDITS_USD", default="5" if ROUTERHUB_ENV == "development" else "0"
)

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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"redact": {"()": "routerhub.logs.RedactSecrets"}},  # tokens in URLs, keys
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if PRODUCTION:
    SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = _bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
