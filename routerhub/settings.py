"""RouterHub settings: every value comes from the environment, with embedded defaults for one machine.

With nothing set, the project runs on SQLite (WAL), local file storage, an in-process cache and a
Celery worker that uses a filesystem broker (no services). With ``DATABASE_URL``, ``REDIS_URL`` and
``CELERY_BROKER_URL`` set, the same code runs on Postgres, Redis and a real broker. In production
(``ROUTERHUB_ENV=production``) missing secrets stop the process at boot.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from routerhub.settings_parts.billing import *  # noqa: F403
from routerhub.settings_parts.environment import (
    BASE_DIR,
    PRODUCTION,
    REDIS_CONNECT_TIMEOUT,
    REDIS_SOCKET_TIMEOUT,
    ROUTERHUB_ENV,
    VAR_DIR,
    _bool,
    _secret,
    env,
    positive_int,
)
from routerhub.settings_parts.gateway import *  # noqa: F403
from routerhub.settings_parts.lifecycle import *  # noqa: F403
from routerhub.settings_parts.security import *  # noqa: F403
from routerhub.settings_parts.training import *  # noqa: F403

SECRET_KEY = _secret("SECRET_KEY")
# Former SECRET_KEYs, comma-separated: during a rotation, what they signed (sessions, email
# confirmation links, and starter-credit grants' inbox references) is still recognised.
SECRET_KEY_FALLBACKS = [
    k.strip() for k in env.list("SECRET_KEY_FALLBACKS", default=[]) if k.strip()
]
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
    "webhooks",
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
    "routerhub.security_headers.ContentSecurityPolicyMiddleware",
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
            "OPTIONS": {
                "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
                "socket_timeout": REDIS_SOCKET_TIMEOUT,
            },
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
    # DRF's three, with a JSON parser that refuses bodies nested too deeply to write back.
    "DEFAULT_PARSER_CLASSES": [
        "routerhub.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
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
    "ENUM_NAME_OVERRIDES": {
        "PipelineKindEnum": "routing.models.PipelineKind",  # vs other kinds
        "WebhookEventEnum": "webhooks.models.WebhookEvent",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "routerhub.schema.add_error_responses",
    ],
}

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_TASK_ALWAYS_EAGER = _bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_FILESYSTEM_BROKER_DIR = VAR_DIR / "celery"

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
# Keys (and unknown keys' "no such key") a gateway process keeps at once; emptied whole when
# full. ~0.7 KB each (tracemalloc): 10,000 bound a worker's key cache to ~7 MB and hold more
# keys than a worker serves within one TTL (README, "100,000 keys").
API_KEY_CACHE_MAX_ENTRIES = env.int("API_KEY_CACHE_MAX_ENTRIES", default=10_000)
ORGANIZATION_SESSION_KEY = "current_organization_id"
# Organizations one person may own: each brings its own training-run cap, rate limits and
# datasets (and, with STARTER_CREDITS_USD, nothing more), so one address cannot multiply them.
ORGANIZATIONS_PER_PERSON_MAX = env.int("ORGANIZATIONS_PER_PERSON_MAX", default=10)
# Invitation emails carry an organization name its owner chose and go out from the platform's
# sender: an organization sends at most this many an hour, has at most this many open at once,
# and mails one address again only after the cooldown (accounts.invitations.invitation_create).
INVITATIONS_PER_ORGANIZATION_PER_HOUR = positive_int("INVITATIONS_PER_ORGANIZATION_PER_HOUR", 20)
INVITATIONS_OPEN_PER_ORGANIZATION_MAX = positive_int("INVITATIONS_OPEN_PER_ORGANIZATION_MAX", 100)
INVITATION_RESEND_COOLDOWN_SECONDS = positive_int("INVITATION_RESEND_COOLDOWN_SECONDS", 600)
# One person, all the organizations they own together (ORGANIZATIONS_PER_PERSON_MAX of them).
INVITATIONS_PER_PERSON_PER_HOUR = positive_int("INVITATIONS_PER_PERSON_PER_HOUR", 40)
# Invitation emails are sent by a task after the invitation commits (accounts.tasks): at most
# this many deliveries of one mail (SMTP errors retried after RETRY_SECONDS · 2^(n-1), at most
# 15 minutes, plus jitter; a delivery whose worker died counts), then the invitation shows
# "mail failed — resend". EMAIL_TIMEOUT bounds each SMTP socket operation (Django's default:
# none), so one attempt ends well inside the task's time limit.
INVITATION_MAIL_MAX_ATTEMPTS = positive_int("INVITATION_MAIL_MAX_ATTEMPTS", 5)
INVITATION_MAIL_RETRY_SECONDS = positive_int("INVITATION_MAIL_RETRY_SECONDS", 30)
# The mail task's time limits (accounts.tasks reads them): a hung SMTP server meets the soft
# one, a failed attempt (retried); the hard one ends the worker's process.
INVITATION_MAIL_SOFT_TIME_LIMIT = 60
INVITATION_MAIL_TIME_LIMIT = 90
# A mail still queued this long after its task was due was lost (a broker that refused the
# publish, an older release's worker that dropped the task): a beat sweep queues it again (at
# most INVITATION_MAIL_STUCK_SWEEP_MAX a run; failed once it has had MAX_ATTEMPTS deliveries)
# and the dashboard offers "resend" for it.
# The sweep must not take for lost a mail whose task is still sending (the claim makes it due
# when it starts; the hard time limit ends it): at least that limit plus a margin for clocks.
INVITATION_MAIL_STUCK_SECONDS = positive_int("INVITATION_MAIL_STUCK_SECONDS", 900)
_STUCK_LEAST = INVITATION_MAIL_TIME_LIMIT + 60
if INVITATION_MAIL_STUCK_SECONDS < _STUCK_LEAST:
    raise ImproperlyConfigured(
        f"INVITATION_MAIL_STUCK_SECONDS must be at least {_STUCK_LEAST} (the mail task's "
        f"{INVITATION_MAIL_TIME_LIMIT} s hard time limit plus 60 s), not "
        f"{INVITATION_MAIL_STUCK_SECONDS}: the sweep would queue again a mail its task is still "
        "sending, and a second mail could go out"
    )
INVITATION_MAIL_STUCK_SWEEP_MAX = positive_int("INVITATION_MAIL_STUCK_SWEEP_MAX", 100)
EMAIL_TIMEOUT = positive_int("EMAIL_TIMEOUT", 20)
# Apps that accounts must not import act on a new organization through these (called with
# organization=..., owner=...) in organization_create's transaction: billing grants
# STARTER_CREDITS_USD (once per person).
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
