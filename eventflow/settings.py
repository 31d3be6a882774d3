"""EventFlow settings, read from the environment.

Development defaults are safe to run locally; with ``EVENTFLOW_ENV=production``
the process refuses to start without a real ``SECRET_KEY``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


ENVIRONMENT = env_str("EVENTFLOW_ENV", "development")
PRODUCTION = ENVIRONMENT == "production"

DEBUG = env_bool("DEBUG", not PRODUCTION)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when EVENTFLOW_ENV=production")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-7c1f0e2a9b"  # noqa: S105 (never in production)
elif PRODUCTION and SECRET_KEY.startswith("change-me"):
    # The placeholder docker-compose.yml ships with.
    raise ImproperlyConfigured("SECRET_KEY is still the placeholder: set it to a long random value")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["*"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# No script reads the CSRF cookie: forms carry the token, and the API's documentation page has it in its script.
CSRF_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "eventflow",
    "streams",
    "ingestion",
    "consumers",
    "analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Counts and times every answer by route name and status (eventflow/metrics_http.py).
    "eventflow.metrics_http.MetricsMiddleware",
    # First after security, so a request's recorded duration covers the rest of the stack.
    "eventflow.middleware.AuditMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # The dashboard's Content-Security-Policy (below) on every answer.
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "eventflow.urls"
WSGI_APPLICATION = "eventflow.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "eventflow.dashboard.navigation",
            ],
        },
    },
]

# --- Data stores -------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/eventflow")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 600),
        conn_health_checks=True,
    )
}
DATABASES["default"].setdefault("OPTIONS", {})
# The test runner's database; the suite sets a name of its own per run so that
# concurrent runs on one server never share (and flush) each other's tables.
if env_str("EVENTFLOW_TEST_DB_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": env_str("EVENTFLOW_TEST_DB_NAME")}
# Server-side prepared statements speed up the hot INSERT of the ingest path.
DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Redis is a cache and a broker, never the only copy of anything: every call to
# it has short timeouts so that an outage degrades service instead of hanging it.
REDIS_SOCKET_TIMEOUT = float(env_str("REDIS_SOCKET_TIMEOUT", "0.5"))

# Prefix of every Redis key EventFlow writes, cache or not.
REDIS_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "ef")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "ef"),
        "OPTIONS": {
            "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
            "socket_timeout": REDIS_SOCKET_TIMEOUT,
        },
    }
}

# --- Auth ----------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The dashboard's sign-in page; Django admin keeps its own (/admin/login/).
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"
# A refused CSRF check answers the dashboard's 403 page.
CSRF_FAILURE_VIEW = "eventflow.views.csrf_failure"
# How long an invitation's (or a password reset's) one-time link works.
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3 * 24 * 3600)
# The site's address in mailed links (https://events.example.com); empty: the address the request came to.
EVENTFLOW_BASE_URL = env_str("EVENTFLOW_BASE_URL")

# --- Audit log ---------------------------------------------------------------------
# Request rows wait in each web process's buffer and are written in bulk every
# FLUSH_SECONDS, or once FLUSH_ROWS wait; a crash loses at most that buffer (see README).
EVENTFLOW_AUDIT = {
    "FLUSH_SECONDS": float(env_str("EVENTFLOW_AUDIT_FLUSH_SECONDS", "1")),
    "FLUSH_ROWS": env_int("EVENTFLOW_AUDIT_FLUSH_ROWS", 500),
    "BUFFER_MAX": env_int("EVENTFLOW_AUDIT_BUFFER_MAX", 10000),
    "RETENTION_DAYS": env_int("EVENTFLOW_AUDIT_RETENTION_DAYS", 90),
}
# Proxies (IPs or networks) whose X-Forwarded-For names the client; empty: the peer is the client.
EVENTFLOW_TRUSTED_PROXIES = env_list("EVENTFLOW_TRUSTED_PROXIES", [])

# --- Metrics (GET /metrics, eventflow/metrics.py) ---------------------------------------
# Closed unless the scraper sends `Authorization: Bearer <METRICS_TOKEN>` or connects from one of these networks.
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOW_NETWORKS = env_list("METRICS_ALLOW_NETWORKS", [])
# A Celery worker's own /metrics port (0: none), for workers that share no PROMETHEUS_MULTIPROC_DIR with web.
METRICS_WORKER_PORT = env_int("METRICS_WORKER_PORT", 0)

# --- Email (invitations) ------------------------------------------------------------
# Development prints mails to the console; production sends them over SMTP.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "EventFlow <eventflow@localhost>")

# --- Content-Security-Policy (django-csp) ---------------------------------------------
# Pages load scripts, styles, fonts and data from the site itself only: no inline
# script or style, no eval (htmx runs with allowEval off), nothing from another origin.
# data: images only, for the small SVG icons drawn in the style sheets.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- I18N / time -----------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files ----------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / ".eventflow" / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

# --- REST framework / OpenAPI ------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["streams.access.DeclaredAccess"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "eventflow.exception_handler.api_exception_handler",
    # People (session or JWT) per minute; API keys and the intake have limits of their own.
    "DEFAULT_THROTTLE_CLASSES": ["eventflow.ratelimit.PersonThrottle"],
    "UNAUTHENTICATED_USER": None,
}

# Token issues go into the audit log ("token.issue").
SIMPLE_JWT = {"TOKEN_OBTAIN_SERIALIZER": "eventflow.audit_api.AuditedTokenObtainPairSerializer"}

SPECTACULAR_SETTINGS = {
    "TITLE": "EventFlow API",
    "DESCRIPTION": (
        "Ingest application usage events, read streams through consumer groups, "
        "and query analytics. Producer and consumer programs authenticate with "
        "`X-API-Key`; people's programs with `Authorization: Bearer <JWT>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "eventflow.openapi.add_api_key_security",
        "eventflow.openapi.add_people_limit_responses",
    ],
    # One name for a choice set that several fields share (seek "to", group "start").
    "ENUM_NAME_OVERRIDES": {
        "PositionEnum": "consumers.api.POSITION_CHOICES",
        "ApiKeyKindEnum": "streams.models.ApiKeyKind",
        "SchemaModeEnum": "streams.models.SchemaMode",
        "DeadLetterStatusEnum": "streams.models.DeadLetterStatus",
        "AlertKindEnum": "analytics.models.AlertKind",
        "AlertDeliveryStatusEnum": "analytics.models.DeliveryStatus",
    },
}

# --- Celery (one place: eventflow/celery.py reads these) ----------------------------

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# --- EventFlow limits ---------------------------------------------------------------

EVENTFLOW = {
    "MAX_BATCH_EVENTS": env_int("EVENTFLOW_MAX_BATCH_EVENTS", 1000),
    "MAX_BODY_BYTES": env_int("EVENTFLOW_MAX_BODY_BYTES", 5 * 1024 * 1024),
    # A gzip body may not inflate past this, whatever its compressed size.
    "MAX_DECOMPRESSED_BYTES": env_int("EVENTFLOW_MAX_DECOMPRESSED_BYTES", 5 * 1024 * 1024),
    "MAX_EVENT_BYTES": env_int("EVENTFLOW_MAX_EVENT_BYTES", 64 * 1024),
    "MAX_JSON_DEPTH": env_int("EVENTFLOW_MAX_JSON_DEPTH", 32),
    "FUTURE_TOLERANCE_SECONDS": env_int("EVENTFLOW_FUTURE_TOLERANCE_SECONDS", 24 * 3600),
    # Requests per minute per API key; 0 turns the limiter off.
    "RATE_LIMIT_PER_MINUTE": env_int("EVENTFLOW_RATE_LIMIT_PER_MINUTE", 60000),
    "AUTH_CACHE_SECONDS": env_int("EVENTFLOW_AUTH_CACHE_SECONDS", 300),
    "STREAM_CACHE_SECONDS": env_int("EVENTFLOW_STREAM_CACHE_SECONDS", 5),
    # How long an analytics answer is kept in Redis (0: not at all; at most 60).
    "ANALYTICS_CACHE_SECONDS": env_int("EVENTFLOW_ANALYTICS_CACHE_SECONDS", 30),
    # Processing: batch size, and the attempts a failing event gets before it
    # becomes a dead letter, with exponential backoff between them.
    "PROCESS_BATCH_SIZE": env_int("EVENTFLOW_PROCESS_BATCH_SIZE", 1000),
    "MAX_ATTEMPTS": env_int("EVENTFLOW_MAX_ATTEMPTS", 5),
    "RETRY_BASE_SECONDS": float(env_str("EVENTFLOW_RETRY_BASE_SECONDS", "2")),
    "RETRY_MAX_SECONDS": float(env_str("EVENTFLOW_RETRY_MAX_SECONDS", "300")),
    "SWEEP_SECONDS": float(env_str("EVENTFLOW_SWEEP_SECONDS", "2")),
    # Alert rules (analytics/alerts.py): how stale a worker's copy of a stream's rules may be,
    # how late an event may arrive and still count in its window, and how long alerts are kept.
    "ALERT_RULES_CACHE_SECONDS": env_int("EVENTFLOW_ALERT_RULES_CACHE_SECONDS", 5),
    "ALERT_LATENESS_SECONDS": env_int("EVENTFLOW_ALERT_LATENESS_SECONDS", 3600),
    "ALERT_RETENTION_DAYS": env_int("EVENTFLOW_ALERT_RETENTION_DAYS", 90),
}

# --- Rate limits of people's endpoints (the intake's is EVENTFLOW["RATE_LIMIT_PER_MINUTE"]) ---
# These fail closed: while Redis is down, logins and the management API answer 503.

EVENTFLOW_RATE_LIMITS = {
    # Login attempts (token endpoints, Django admin, the dashboard) in a sliding window.
    "LOGIN_PER_IP": env_int("EVENTFLOW_LOGIN_LIMIT_PER_IP", 30),
    "LOGIN_PER_USERNAME": env_int("EVENTFLOW_LOGIN_LIMIT_PER_USERNAME", 10),
    "LOGIN_WINDOW_SECONDS": env_int("EVENTFLOW_LOGIN_WINDOW_SECONDS", 300),
    # Token refreshes per client address in the same window (they take no password).
    "REFRESH_PER_IP": env_int("EVENTFLOW_TOKEN_REFRESH_LIMIT_PER_IP", 120),
    # After this many failures of a username, each further attempt waits 2, 4, 8, … seconds
    # after the last failure, up to the maximum; a successful login clears them.
    "LOGIN_FREE_FAILURES": env_int("EVENTFLOW_LOGIN_FREE_FAILURES", 5),
    "LOGIN_DELAY_MAX_SECONDS": env_int("EVENTFLOW_LOGIN_DELAY_MAX_SECONDS", 900),
    "LOGIN_FAILURES_KEPT_SECONDS": env_int("EVENTFLOW_LOGIN_FAILURES_KEPT_SECONDS", 3600),
    # Management API requests a minute per person; 0 turns it off.
    "API_PER_USER_PER_MINUTE": env_int("EVENTFLOW_API_RATE_LIMIT_PER_USER", 1200),
}

# --- Consumer groups and webhooks ------------------------------------------------------

# Webhook URLs may never reach private, link-local or metadata addresses; loopback
# only when this is on (development and tests).
EVENTFLOW_WEBHOOK_ALLOW_LOOPBACK = env_bool("EVENTFLOW_WEBHOOK_ALLOW_LOOPBACK", False)
EVENTFLOW_CONSUMERS = {
    "MAX_POLL_RECORDS": 1000,
    "MAX_WAIT_MS": 30000,
    "MAX_LEASE_SECONDS": env_int("EVENTFLOW_MAX_LEASE_SECONDS", 3600),
    # Attempts per webhook batch before its events become dead letters.
    "WEBHOOK_MAX_ATTEMPTS": env_int("EVENTFLOW_WEBHOOK_MAX_ATTEMPTS", 8),
    "WEBHOOK_BACKOFF_BASE_SECONDS": float(env_str("EVENTFLOW_WEBHOOK_BACKOFF_BASE_SECONDS", "2")),
    "WEBHOOK_BACKOFF_MAX_SECONDS": float(env_str("EVENTFLOW_WEBHOOK_BACKOFF_MAX_SECONDS", "600")),
    # A run of this many failed attempts in a row disables the subscription.
    "WEBHOOK_DISABLE_AFTER_FAILURES": env_int("EVENTFLOW_WEBHOOK_DISABLE_AFTER_FAILURES", 50),
    "WEBHOOK_CONNECT_TIMEOUT_SECONDS": float(env_str("EVENTFLOW_WEBHOOK_CONNECT_TIMEOUT_SECONDS", "5")),
    "WEBHOOK_TOTAL_TIMEOUT_SECONDS": float(env_str("EVENTFLOW_WEBHOOK_TOTAL_TIMEOUT_SECONDS", "10")),
    "WEBHOOK_MAX_RESPONSE_BYTES": env_int("EVENTFLOW_WEBHOOK_MAX_RESPONSE_BYTES", 64 * 1024),
    "WEBHOOK_KEEP_ATTEMPTS": env_int("EVENTFLOW_WEBHOOK_KEEP_ATTEMPTS", 200),
    "WEBHOOK_SWEEP_SECONDS": float(env_str("EVENTFLOW_WEBHOOK_SWEEP_SECONDS", "1")),
}

# --- Production hardening ------------------------------------------------------------

if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    if env_bool("USE_X_FORWARDED_PROTO", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # /health and /ready are polled by load balancers and probes, /metrics by Prometheus, over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^ready$", r"^metrics$"]

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# "json": one JSON object a line (for a log collector); anything else is a Python logging format for people.
# Either way every line written while serving a request, or in a task it caused, names its request id.
LOG_FORMAT = env_str("LOG_FORMAT", "%(asctime)s %(levelname)s %(name)s: %(message)s")
LOG_JSON = LOG_FORMAT.strip().lower() == "json"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "eventflow.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {"class": "eventflow.logs.PlainFormatter", "format": "%(message)s" if LOG_JSON else LOG_FORMAT},
        "json": {"()": "eventflow.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_JSON else "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Only our handler: Django's own console handler would print each of its lines twice under DEBUG.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "INFO"},
        # A line per task run and per beat send (every few seconds) drowns the rest;
        # failures still show. CELERY_LOG_LEVEL=INFO brings them back.
        "celery.app.trace": {"level": env_str("CELERY_LOG_LEVEL", "WARNING")},
        "celery.worker.strategy": {"level": env_str("CELERY_LOG_LEVEL", "WARNING")},
        "celery.beat": {"level": env_str("CELERY_LOG_LEVEL", "WARNING")},
    },
}
