"""Django's settings. EventFlow's own settings are read from the environment in eventflow/conf.py
(once, typed, with defaults and bounds); where Django needs one, it is taken from there.

Development defaults are safe to run locally; with ``EVENTFLOW_ENV=production``
the process refuses to start without a real ``SECRET_KEY``.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from eventflow import conf

BASE_DIR = conf.BASE_DIR
# Read once for the process; application code reads it with eventflow.conf.get().
EVENTFLOW_CONF = conf.at_start()
ef = EVENTFLOW_CONF


PRODUCTION = ef.production

DEBUG = (not PRODUCTION) if ef.debug is None else ef.debug

SECRET_KEY = ef.secret_key
if not SECRET_KEY:
    # Development only: conf.py refuses a production start without a real key (one line, not this module's
    # traceback), before Django imports this module.
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-7c1f0e2a9b"  # noqa: S105 (never in production)

ALLOWED_HOSTS = list(ef.allowed_hosts if ef.allowed_hosts is not None else ([] if PRODUCTION else ["*"]))
CSRF_TRUSTED_ORIGINS = list(ef.csrf_trusted_origins)
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
    # Last, so its 400 page has the person signed in and every answer's headers (eventflow/nul_query.py).
    "eventflow.nul_query.NulQueryMiddleware",
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

DATABASES = {
    "default": dj_database_url.parse(
        ef.database_url,
        conn_max_age=ef.db_conn_max_age,
        conn_health_checks=True,
    )
}
DATABASES["default"].setdefault("OPTIONS", {})
# The test runner's database; the suite sets a name of its own per run so that
# concurrent runs on one server never share (and flush) each other's tables.
if ef.test_db_name:
    DATABASES["default"]["TEST"] = {"NAME": ef.test_db_name}
# Server-side prepared statements speed up the hot INSERT of the ingest path.
DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)
# A server that is down refuses at once; a network path that drops packets would hang a
# worker for minutes (the kernel's retransmissions). libpq gives up on a connect after
# DB_CONNECT_TIMEOUT, on data the server does not acknowledge after DB_TCP_TIMEOUT, and
# on an idle connection whose peer is gone after keepalives of about the same time; the
# request then answers 503 (eventflow/views.py server_error).
DATABASES["default"]["OPTIONS"].update(
    {
        "connect_timeout": ef.db_connect_timeout,
        "tcp_user_timeout": ef.db_tcp_timeout * 1000,
        "keepalives": 1,
        "keepalives_idle": max(1, ef.db_tcp_timeout // 3),
        "keepalives_interval": max(1, ef.db_tcp_timeout // 6),
        "keepalives_count": 3,
    }
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": ef.redis_url,
        "KEY_PREFIX": ef.redis_key_prefix,
        "OPTIONS": {
            "socket_connect_timeout": ef.redis_socket_timeout,
            "socket_timeout": ef.redis_socket_timeout,
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
PASSWORD_RESET_TIMEOUT = ef.password_reset_timeout
# The most fields a form may send. Django's 1,000 cut off a dead-letters selection of the most
# one action takes (1,000: streams/dead_letters.MAX_BULK_IDS) with the form's own fields, and
# one a little over it before its page could say it was too many; beyond this it is a 400 page.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 5000

# --- Email (invitations) ------------------------------------------------------------
# Development prints mails to the console; production sends them over SMTP.
EMAIL_BACKEND = ef.email_backend or (
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST = ef.email_host
EMAIL_PORT = ef.email_port
EMAIL_HOST_USER = ef.email_host_user
EMAIL_HOST_PASSWORD = ef.email_host_password
EMAIL_USE_TLS = ef.email_use_tls
EMAIL_USE_SSL = ef.email_use_ssl
EMAIL_TIMEOUT = ef.email_timeout
DEFAULT_FROM_EMAIL = ef.default_from_email

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
STATIC_ROOT = Path(ef.static_root)
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
    # orjson, writing the framework JSONRenderer's JSON (eventflow/renderers.py).
    "DEFAULT_RENDERER_CLASSES": ["eventflow.renderers.FastJSONRenderer"],
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
        "KafkaSinkStartEnum": "consumers.kafka_api.SINK_START_CHOICES",
        "KafkaSourceStartEnum": "consumers.kafka_api.SOURCE_START_CHOICES",
        "KafkaBridgeStatusEnum": "consumers.kafka_api.STATUS_CHOICES",
    },
}

# --- Celery (one place: eventflow/celery.py reads these) ----------------------------

CELERY_BROKER_URL = ef.celery_broker_url or ef.redis_url
CELERY_TASK_ALWAYS_EAGER = ef.celery_task_always_eager

# --- Production hardening ------------------------------------------------------------

if PRODUCTION:
    SECURE_SSL_REDIRECT = ef.secure_ssl_redirect
    SECURE_HSTS_SECONDS = ef.secure_hsts_seconds
    SECURE_HSTS_INCLUDE_SUBDOMAINS = ef.secure_hsts_include_subdomains
    SECURE_HSTS_PRELOAD = ef.secure_hsts_preload
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    if ef.use_x_forwarded_proto:
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # /health and /ready are polled by load balancers and probes, /metrics by Prometheus, over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^ready$", r"^metrics$"]

# LOG_FORMAT "json": one JSON object a line (for a log collector); anything else is a Python logging format
# for people. Either way every line written while serving a request, or in a task it caused, names its request id.
LOG_JSON = ef.log_format.strip().lower() == "json"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "eventflow.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {"class": "eventflow.logs.PlainFormatter", "format": "%(message)s" if LOG_JSON else ef.log_format},
        "json": {"()": "eventflow.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_JSON else "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": ef.log_level},
    "loggers": {
        # Only our handler: Django's own console handler would print each of its lines twice under DEBUG.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "INFO"},
        # A line per task run and per beat send (every few seconds) drowns the rest;
        # failures still show. CELERY_LOG_LEVEL=INFO brings them back.
        "celery.app.trace": {"level": ef.celery_log_level},
        "celery.worker.strategy": {"level": ef.celery_log_level},
        "celery.beat": {"level": ef.celery_log_level},
    },
}
