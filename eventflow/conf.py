"""Every EventFlow setting, read from the environment once, typed, with its default and bounds.

Adding a setting:

1. Add one field to ``Settings`` below, in the section it belongs to::

       retention_days: int = setting("EVENTFLOW_RETENTION_DAYS", 30, minimum=1)

   The field's annotation decides how the variable is parsed (``str``, ``int``,
   ``float``, ``bool``, ``tuple[str, ...]`` for a comma-separated list; ``X | None``
   when unset means "decided elsewhere", e.g. by ``EVENTFLOW_ENV``). ``minimum``,
   ``maximum`` and ``choices`` are checked at start-up: a bad value stops the
   process with a message naming the variable, never a surprise at run time.
2. Read it where it is needed with ``conf.get().retention_days`` (``from eventflow
   import conf``). Application code never reads ``os.environ`` or
   ``django.conf.settings`` for an EventFlow setting (a test checks:
   ``eventflow/tests/test_conf.py``). Tests change a value with the
   ``conf_override`` fixture (tests/fixtures.py).
3. Add its row to the README's Configuration table (a test checks both list the
   same names). Where Django needs the value, ``eventflow/settings.py`` takes it
   from here.

``get()`` answers what the Django settings hold (``EVENTFLOW_CONF``, which tests
may override); ``at_start()`` is the same reading for code that runs before
Django's settings are loaded (the process's command line, the metrics registry).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

BASE_DIR: Path = Path(__file__).resolve().parent.parent

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Read by the OpenTelemetry SDK itself when tracing is on (README: Configuration); EventFlow only passes them on.
READ_BY_OPENTELEMETRY = (
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)


def _networks(name: str, value: tuple[str, ...]) -> None:
    for entry in value:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {entry!r} is not an address or network") from exc


def _log_format(name: str, value: str) -> None:
    """``json``, or a logging format whose fields a record has: else logging's set-up fails with a
    traceback that does not name the variable, or every line becomes a "--- Logging error ---"."""
    if value.strip().lower() == "json":
        return
    try:
        # request_id: set on every record by eventflow.logs.RequestIdFilter.
        logging.Formatter(value).format(logging.makeLogRecord({"msg": "check", "request_id": ""}))
    except (ValueError, KeyError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"{name} must be json or a Python logging format such as '%(levelname)s %(message)s', got {value!r}"
        ) from exc


def _url(*schemes: str, host: bool = False) -> Callable[[str, Any], None]:
    """A URL of one of ``schemes`` (with a host if ``host``) and a numeric port, if any: else the first
    call to use it would fail, or a mailed link would lead nowhere."""

    def check(name: str, value: str | None) -> None:
        if not value:
            return
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError when it is not a number
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {value!r} is not a URL ({exc})") from exc
        if parts.scheme not in schemes or (host and not parts.hostname):
            raise ImproperlyConfigured(f"{name} must be a {'/'.join(f'{s}://' for s in schemes)} URL, got {value!r}")

    return check


def setting(
    env: str,
    default: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    check: Callable[[str, Any], None] | None = None,
    strip: bool = False,
) -> Any:
    """One setting: its environment variable, default and bounds (a dataclass field).

    ``strip``: surrounding whitespace is dropped before parsing, and a value of nothing else is unset; for a
    token compared byte for byte, which a secrets file or ``echo`` would otherwise end with a newline.
    """
    return field(
        default=default,
        metadata={
            "env": env,
            "minimum": minimum,
            "maximum": maximum,
            "choices": choices,
            "check": check,
            "strip": strip,
        },
    )


@dataclass(frozen=True, slots=True)
class Settings:
    # --- The installation ------------------------------------------------------------------------
    environment: str = setting("EVENTFLOW_ENV", "development", choices=("development", "production"))
    secret_key: str = setting("SECRET_KEY", "")
    debug: bool | None = setting("DEBUG", None)  # None: on in development, off in production
    allowed_hosts: tuple[str, ...] | None = setting("ALLOWED_HOSTS", None)  # None: * in development
    csrf_trusted_origins: tuple[str, ...] = setting("CSRF_TRUSTED_ORIGINS", ())
    base_url: str = setting("EVENTFLOW_BASE_URL", "", check=_url("https", "http", host=True))
    static_root: str = setting("STATIC_ROOT", str(BASE_DIR / ".eventflow" / "static"))
    trusted_proxies: tuple[str, ...] = setting("EVENTFLOW_TRUSTED_PROXIES", (), check=_networks)

    # --- Data stores ------------------------------------------------------------------------------
    database_url: str = setting(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/eventflow", check=_url("postgres", "postgresql")
    )
    db_conn_max_age: int = setting("DB_CONN_MAX_AGE", 600, minimum=0)
    # A PostgreSQL that is down or unreachable costs a request at most these, then a 503 (README: Outages).
    db_connect_timeout: int = setting("DB_CONNECT_TIMEOUT", 5, minimum=1, maximum=60)
    db_tcp_timeout: int = setting("DB_TCP_TIMEOUT", 15, minimum=2, maximum=600)
    # The test runner's database (tests/pytest_env.py names one per run).
    test_db_name: str = setting("EVENTFLOW_TEST_DB_NAME", "")
    redis_url: str = setting("REDIS_URL", "redis://127.0.0.1:6379/0", check=_url("redis", "rediss", "unix"))
    # Redis is a cache and a broker, never the only copy of anything: short timeouts on every call.
    redis_socket_timeout: float = setting("REDIS_SOCKET_TIMEOUT", 0.5, minimum=0.01, maximum=60)
    # Prefix of every Redis key EventFlow writes, cache or not.
    redis_key_prefix: str = setting("CACHE_KEY_PREFIX", "ef")

    # --- Celery ------------------------------------------------------------------------------------
    celery_broker_url: str | None = setting("CELERY_BROKER_URL", None)  # None: REDIS_URL
    celery_task_always_eager: bool = setting("CELERY_TASK_ALWAYS_EAGER", False)

    # --- Logs, traces, metrics -----------------------------------------------------------------------
    log_level: str = setting("LOG_LEVEL", "INFO", choices=LOG_LEVELS)
    log_format: str = setting("LOG_FORMAT", "%(asctime)s %(levelname)s %(name)s: %(message)s", check=_log_format)
    celery_log_level: str = setting("CELERY_LOG_LEVEL", "WARNING", choices=LOG_LEVELS)
    otlp_endpoint: str = setting("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    otlp_traces_endpoint: str = setting("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
    otel_service_name: str = setting("OTEL_SERVICE_NAME", "")
    metrics_token: str = setting("METRICS_TOKEN", "", strip=True)
    metrics_allow_networks: tuple[str, ...] = setting("METRICS_ALLOW_NETWORKS", (), check=_networks)
    metrics_worker_port: int = setting("METRICS_WORKER_PORT", 0, minimum=0, maximum=65535)
    prometheus_multiproc_dir: str = setting("PROMETHEUS_MULTIPROC_DIR", "")

    # --- People: invitations and mail -------------------------------------------------------------
    password_reset_timeout: int = setting("PASSWORD_RESET_TIMEOUT", 3 * 24 * 3600, minimum=60)
    email_backend: str | None = setting("EMAIL_BACKEND", None)  # None: console in development, SMTP in production
    email_host: str = setting("EMAIL_HOST", "localhost")
    email_port: int = setting("EMAIL_PORT", 25, minimum=1, maximum=65535)
    email_host_user: str = setting("EMAIL_HOST_USER", "")
    email_host_password: str = setting("EMAIL_HOST_PASSWORD", "")
    email_use_tls: bool = setting("EMAIL_USE_TLS", False)
    email_use_ssl: bool = setting("EMAIL_USE_SSL", False)
    email_timeout: int = setting("EMAIL_TIMEOUT", 10, minimum=1)
    default_from_email: str = setting("DEFAULT_FROM_EMAIL", "EventFlow <eventflow@localhost>")

    # --- Production hardening (EVENTFLOW_ENV=production) ------------------------------------------
    secure_ssl_redirect: bool = setting("SECURE_SSL_REDIRECT", True)
    secure_hsts_seconds: int = setting("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    secure_hsts_include_subdomains: bool = setting("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    secure_hsts_preload: bool = setting("SECURE_HSTS_PRELOAD", True)
    use_x_forwarded_proto: bool = setting("USE_X_FORWARDED_PROTO", False)

    # --- Intake ---------------------------------------------------------------------------------------
    max_batch_events: int = setting("EVENTFLOW_MAX_BATCH_EVENTS", 1000, minimum=1)
    max_body_bytes: int = setting("EVENTFLOW_MAX_BODY_BYTES", 5 * 1024 * 1024, minimum=1024)
    # A gzip body may not inflate past this, whatever its compressed size.
    max_decompressed_bytes: int = setting("EVENTFLOW_MAX_DECOMPRESSED_BYTES", 5 * 1024 * 1024, minimum=1024)
    max_event_bytes: int = setting("EVENTFLOW_MAX_EVENT_BYTES", 64 * 1024, minimum=256)
    max_json_depth: int = setting("EVENTFLOW_MAX_JSON_DEPTH", 32, minimum=2, maximum=1000)
    future_tolerance_seconds: int = setting("EVENTFLOW_FUTURE_TOLERANCE_SECONDS", 24 * 3600, minimum=0)
    # Requests per minute per API key; 0 turns the limiter off.
    rate_limit_per_minute: int = setting("EVENTFLOW_RATE_LIMIT_PER_MINUTE", 60000, minimum=0)
    auth_cache_seconds: int = setting("EVENTFLOW_AUTH_CACHE_SECONDS", 300, minimum=0)
    stream_cache_seconds: int = setting("EVENTFLOW_STREAM_CACHE_SECONDS", 5, minimum=0)

    # --- Processing: batch size, attempts before a dead letter, exponential backoff between them ----
    process_batch_size: int = setting("EVENTFLOW_PROCESS_BATCH_SIZE", 1000, minimum=1, maximum=100_000)
    max_attempts: int = setting("EVENTFLOW_MAX_ATTEMPTS", 5, minimum=1)
    retry_base_seconds: float = setting("EVENTFLOW_RETRY_BASE_SECONDS", 2.0, minimum=0)
    retry_max_seconds: float = setting("EVENTFLOW_RETRY_MAX_SECONDS", 300.0, minimum=0)
    sweep_seconds: float = setting("EVENTFLOW_SWEEP_SECONDS", 2.0, minimum=0.1)

    # --- Analytics and alert rules ----------------------------------------------------------------------
    # How long an analytics answer is kept in Redis (0: not at all).
    analytics_cache_seconds: int = setting("EVENTFLOW_ANALYTICS_CACHE_SECONDS", 30, minimum=0, maximum=60)
    # PostgreSQL's work_mem for funnels, paths and retention: each sort or hash of one such question
    # (and each of its parallel workers) may take this much before it spills to disk.
    journey_work_mem_mb: int = setting("EVENTFLOW_JOURNEY_WORK_MEM_MB", 256, minimum=4, maximum=4096)
    # How many such questions PostgreSQL answers at once, installation-wide, and how long one waits for
    # its turn before the caller is told to come back (503 with Retry-After): the bound on their memory.
    journey_concurrency: int = setting("EVENTFLOW_JOURNEY_CONCURRENCY", 2, minimum=1, maximum=64)
    journey_wait_seconds: float = setting("EVENTFLOW_JOURNEY_WAIT_SECONDS", 20.0, minimum=0, maximum=300)
    # How stale a worker's copy of a stream's rules may be, how late an event may arrive and
    # still count in its window, how often beat checks, and how long alerts are kept.
    alert_rules_cache_seconds: int = setting("EVENTFLOW_ALERT_RULES_CACHE_SECONDS", 5, minimum=0)
    alert_lateness_seconds: int = setting("EVENTFLOW_ALERT_LATENESS_SECONDS", 3600, minimum=0)
    alert_check_seconds: float = setting("EVENTFLOW_ALERT_CHECK_SECONDS", 15.0, minimum=1)
    alert_retention_days: int = setting("EVENTFLOW_ALERT_RETENTION_DAYS", 90, minimum=1)

    # --- Audit log: each web process's buffer is written every FLUSH_SECONDS or once FLUSH_ROWS wait ---
    audit_flush_seconds: float = setting("EVENTFLOW_AUDIT_FLUSH_SECONDS", 1.0, minimum=0.05)
    audit_flush_rows: int = setting("EVENTFLOW_AUDIT_FLUSH_ROWS", 500, minimum=1)
    audit_buffer_max: int = setting("EVENTFLOW_AUDIT_BUFFER_MAX", 10000, minimum=1)
    audit_retention_days: int = setting("EVENTFLOW_AUDIT_RETENTION_DAYS", 90, minimum=1)

    # --- Retention (streams/retention.py, run by beat; a stream's log keeps its own retention_days) -------
    retention_interval_seconds: float = setting("EVENTFLOW_RETENTION_INTERVAL_SECONDS", 3600.0, minimum=10)
    # Daily partitions of the log are created this many days ahead of today.
    log_partitions_ahead_days: int = setting("EVENTFLOW_LOG_PARTITIONS_AHEAD_DAYS", 7, minimum=2, maximum=365)
    dead_letter_retention_days: int = setting("EVENTFLOW_DEAD_LETTER_RETENTION_DAYS", 30, minimum=1)
    delivery_attempt_retention_days: int = setting("EVENTFLOW_DELIVERY_ATTEMPT_RETENTION_DAYS", 30, minimum=1)
    rollup_minute_retention_days: int = setting("EVENTFLOW_ROLLUP_MINUTE_RETENTION_DAYS", 90, minimum=1)
    rollup_hour_retention_days: int = setting("EVENTFLOW_ROLLUP_HOUR_RETENTION_DAYS", 400, minimum=1)
    rollup_day_retention_days: int = setting("EVENTFLOW_ROLLUP_DAY_RETENTION_DAYS", 1830, minimum=1)

    # --- Rate limits of people's endpoints (fail closed: 503 while Redis is down) -------------------
    login_limit_per_ip: int = setting("EVENTFLOW_LOGIN_LIMIT_PER_IP", 30, minimum=1)
    login_limit_per_username: int = setting("EVENTFLOW_LOGIN_LIMIT_PER_USERNAME", 10, minimum=1)
    login_window_seconds: int = setting("EVENTFLOW_LOGIN_WINDOW_SECONDS", 300, minimum=1)
    # Token refreshes per client address in the same window (they take no password).
    token_refresh_limit_per_ip: int = setting("EVENTFLOW_TOKEN_REFRESH_LIMIT_PER_IP", 120, minimum=1)
    # After this many failures of a username, each further attempt waits 2, 4, 8, … seconds
    # after the last failure, up to the maximum; a successful login clears them.
    login_free_failures: int = setting("EVENTFLOW_LOGIN_FREE_FAILURES", 5, minimum=0)
    login_delay_max_seconds: int = setting("EVENTFLOW_LOGIN_DELAY_MAX_SECONDS", 900, minimum=0)
    login_failures_kept_seconds: int = setting("EVENTFLOW_LOGIN_FAILURES_KEPT_SECONDS", 3600, minimum=1)
    # Management API requests a minute per person; 0 turns it off.
    api_rate_limit_per_user: int = setting("EVENTFLOW_API_RATE_LIMIT_PER_USER", 1200, minimum=0)

    # --- Consumer groups and webhooks ------------------------------------------------------------------
    max_lease_seconds: int = setting("EVENTFLOW_MAX_LEASE_SECONDS", 3600, minimum=1)
    # Webhook URLs never reach private, link-local or metadata addresses; loopback only with this on.
    webhook_allow_loopback: bool = setting("EVENTFLOW_WEBHOOK_ALLOW_LOOPBACK", False)
    webhook_max_attempts: int = setting("EVENTFLOW_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
    webhook_backoff_base_seconds: float = setting("EVENTFLOW_WEBHOOK_BACKOFF_BASE_SECONDS", 2.0, minimum=0)
    webhook_backoff_max_seconds: float = setting("EVENTFLOW_WEBHOOK_BACKOFF_MAX_SECONDS", 600.0, minimum=0)
    webhook_disable_after_failures: int = setting("EVENTFLOW_WEBHOOK_DISABLE_AFTER_FAILURES", 50, minimum=1)
    webhook_connect_timeout_seconds: float = setting(
        "EVENTFLOW_WEBHOOK_CONNECT_TIMEOUT_SECONDS", 5.0, minimum=0.1, maximum=60
    )
    # Below the delivery's 60 s lease (consumers/webhook_services.py), which a POST must not outlive.
    webhook_total_timeout_seconds: float = setting(
        "EVENTFLOW_WEBHOOK_TOTAL_TIMEOUT_SECONDS", 10.0, minimum=0.1, maximum=45
    )
    webhook_max_response_bytes: int = setting("EVENTFLOW_WEBHOOK_MAX_RESPONSE_BYTES", 64 * 1024, minimum=0)
    webhook_keep_attempts: int = setting("EVENTFLOW_WEBHOOK_KEEP_ATTEMPTS", 200, minimum=1)
    webhook_sweep_seconds: float = setting("EVENTFLOW_WEBHOOK_SWEEP_SECONDS", 1.0, minimum=0.1)

    # --- The Kafka bridge (`manage.py kafka_bridge`): defaults for sinks and sources that leave them empty ---
    kafka_bootstrap_servers: str = setting("KAFKA_BOOTSTRAP_SERVERS", "")
    kafka_security_protocol: str = setting(
        "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
    )
    kafka_sasl_mechanism: str = setting(
        "KAFKA_SASL_MECHANISM", "PLAIN", choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
    )
    kafka_sasl_username: str = setting("KAFKA_SASL_USERNAME", "")
    kafka_sasl_password: str = setting("KAFKA_SASL_PASSWORD", "")
    kafka_ssl_ca_location: str = setting("KAFKA_SSL_CA_LOCATION", "")
    # A sink's batch not acknowledged by the broker within this is sent again (after a backoff).
    kafka_delivery_timeout_seconds: float = setting(
        "EVENTFLOW_KAFKA_DELIVERY_TIMEOUT_SECONDS", 10.0, minimum=1, maximum=300
    )
    # How long a bridge process holds a sink or source without renewing it before another may take over.
    kafka_runner_lease_seconds: float = setting("EVENTFLOW_KAFKA_RUNNER_LEASE_SECONDS", 30.0, minimum=2)
    # How long the bridge sleeps when nothing moved, and the longest backoff after a broker error.
    kafka_idle_seconds: float = setting("EVENTFLOW_KAFKA_IDLE_SECONDS", 0.5, minimum=0.01, maximum=60)
    kafka_retry_max_seconds: float = setting("EVENTFLOW_KAFKA_RETRY_MAX_SECONDS", 30.0, minimum=0.1)

    # --- Processes: `python -m eventflow web|worker|webhooks|beat` and the development launcher -------
    host: str = setting("HOST", "127.0.0.1")
    port: int = setting("PORT", 8000, minimum=1, maximum=65535)
    web_concurrency: int = setting("WEB_CONCURRENCY", 2, minimum=1)
    web_threads: int = setting("WEB_THREADS", 32, minimum=1)
    web_server: str = setting("WEB_SERVER", "gunicorn", choices=("gunicorn", "granian"))
    # The web server's line per request on stdout. Off: the audit log already keeps every API request and
    # page action (who, what, status, time, request id), and the line cost 7-24 % of a single event's web CPU.
    web_access_log: bool = setting("WEB_ACCESS_LOG", False)
    worker_concurrency: int = setting("WORKER_CONCURRENCY", 2, minimum=1)
    webhook_concurrency: int = setting("WEBHOOK_CONCURRENCY", 8, minimum=1)
    # Embedded PostgreSQL's data, the demo key, the beat schedule.
    state_dir: str = setting("EVENTFLOW_STATE_DIR", str(BASE_DIR / ".eventflow"))
    # The first admin user (manage.py bootstrap), made when there is no superuser.
    admin_user: str = setting("EVENTFLOW_ADMIN_USER", "admin")
    admin_password: str = setting("EVENTFLOW_ADMIN_PASSWORD", "")
    admin_email: str = setting("EVENTFLOW_ADMIN_EMAIL", "admin@example.com")

    def __post_init__(self) -> None:
        for spec in fields(self):
            _check(spec.metadata, getattr(self, spec.name))
        if self.production:
            _production_secret_key(self.secret_key)
        if self.email_use_tls and self.email_use_ssl:
            # Django's SMTP backend refuses the pair when it sends: every invitation and password reset would fail.
            raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive: set one of them")
        # Appends need the partition of their day: retention, which makes them, must run within that time.
        if self.retention_interval_seconds >= self.log_partitions_ahead_days * 86400:
            raise ImproperlyConfigured(
                f"EVENTFLOW_RETENTION_INTERVAL_SECONDS must be less than EVENTFLOW_LOG_PARTITIONS_AHEAD_DAYS "
                f"({self.log_partitions_ahead_days}) days, got {self.retention_interval_seconds:g}"
            )

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).resolve()


def _production_secret_key(value: str) -> None:
    """Here, not in Django's settings module: a refusal there was a traceback of its import; from here it is
    the one line of ``at_start_or_exit``. The key itself is kept as given (stripping it would change what a
    running installation's sessions and signed links were signed with)."""
    if not value.strip():
        raise ImproperlyConfigured("SECRET_KEY must be set when EVENTFLOW_ENV=production")
    if value.startswith("change-me"):
        # The placeholder docker-compose.yml ships with.
        raise ImproperlyConfigured("SECRET_KEY is still the placeholder: set it to a long random value")


def _check(meta: Mapping[str, Any], value: Any) -> None:
    name = meta["env"]
    if value is None:
        return
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise ImproperlyConfigured(f"{name} must be at least {meta['minimum']:g}, got {value!r}")
    if meta["maximum"] is not None and value > meta["maximum"]:
        raise ImproperlyConfigured(f"{name} must be at most {meta['maximum']:g}, got {value!r}")
    if meta["choices"] and value not in meta["choices"]:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(meta['choices'])}; got {value!r}")
    if meta["check"] is not None:
        meta["check"](name, value)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(name: str, kind: Any, raw: str) -> Any:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    try:
        if kind is bool:
            text = raw.strip().lower()
            if text not in _TRUE | _FALSE:
                raise ValueError
            return text in _TRUE
        if kind is int:
            return int(raw)
        if kind is float:
            number = float(raw)
            # nan passes every bound (each comparison with it is false), inf every minimum.
            if not math.isfinite(number):
                raise ValueError(raw)
            return number
        if kind is str:
            return raw
        if typing.get_origin(kind) is tuple:
            return tuple(item.strip() for item in raw.split(",") if item.strip())
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be {_KIND_NAMES.get(kind, kind)}, got {raw!r}") from exc
    raise TypeError(f"no parser for the setting {name}'s type {kind!r}")


_KIND_NAMES = {bool: "on or off (1/0, true/false, yes/no, on/off)", int: "an integer", float: "a number"}


def load(environ: Mapping[str, str]) -> Settings:
    """The settings ``environ`` gives; an empty variable counts as unset. Raises ImproperlyConfigured."""
    hints = typing.get_type_hints(Settings)
    values = {}
    for spec in fields(Settings):
        raw = environ.get(spec.metadata["env"], "")
        if spec.metadata["strip"]:
            raw = raw.strip()
        if raw != "":
            values[spec.name] = _parse(spec.metadata["env"], hints[spec.name], raw)
    return Settings(**values)


def names() -> list[str]:
    """Every environment variable EventFlow reads (the README's Configuration tables list the same)."""
    return [spec.metadata["env"] for spec in fields(Settings)]


_at_start: Settings | None = None


def at_start() -> Settings:
    """This process's settings as its environment gave them (read once)."""
    global _at_start
    if _at_start is None:
        _at_start = load(os.environ)
    return _at_start


def at_start_or_exit() -> Settings:
    """``at_start()`` for a command line's entry: a bad setting ends the process with its one-line
    message naming the variable (exit 1), not a traceback."""
    try:
        return at_start()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"eventflow: {exc}") from None


def get() -> Settings:
    """The settings in force: Django's ``EVENTFLOW_CONF`` (``at_start()``, unless a test overrides it)."""
    return django_settings.EVENTFLOW_CONF  # type: ignore[no-any-return]
