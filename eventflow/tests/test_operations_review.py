"""Operations and the log's upkeep: settings read at start, the retention job, management commands."""

from __future__ import annotations

import io
import re
import threading

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from eventflow import conf
from streams.models import ApiKey, Stream


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# --- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("REDIS_SOCKET_TIMEOUT", "nan"),
        ("EVENTFLOW_SWEEP_SECONDS", "nan"),
        ("EVENTFLOW_RETENTION_INTERVAL_SECONDS", "inf"),
    ],
)
def test_a_number_setting_that_is_not_finite_is_refused_at_start(name, raw):
    # nan passes every bound check (each comparison with it is false) and inf every minimum: a socket
    # timeout or beat interval of nan would only fail deep in a running process.
    with pytest.raises(ImproperlyConfigured, match=re.escape(f"{name} must be a number, got {raw!r}")):
        conf.load({name: raw})


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        # Without a scheme: `manage.py check` passed, and the first Redis call raised ValueError, which the
        # callers' guard (redis errors only) lets through.
        ("REDIS_URL", "127.0.0.1:6379", "REDIS_URL must be a redis://"),
        ("REDIS_URL", "redis://127.0.0.1:63x9/0", "REDIS_URL: 'redis://127.0.0.1:63x9/0' is not a URL"),
        ("DATABASE_URL", "mysql://u@db/eventflow", "DATABASE_URL must be a postgres://"),
        ("DATABASE_URL", "db.example.com:5432/eventflow", "DATABASE_URL must be a postgres://"),
    ],
)
def test_a_store_url_that_cannot_work_is_refused_at_start_with_its_name(name, raw, message):
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        conf.load({name: raw})


@pytest.mark.parametrize("raw", ["events.example.com", "https://", "ftp://events.example.com"])
def test_a_base_url_that_makes_no_link_is_refused_at_start(raw):
    # Invitations mailed "events.example.com/account/…" (no scheme: not a link), and password resets
    # fell back to the request's Host header, which this setting exists to keep out.
    with pytest.raises(ImproperlyConfigured, match=re.escape("EVENTFLOW_BASE_URL must be a https://")):
        conf.load({"EVENTFLOW_BASE_URL": raw})
    assert conf.load({"EVENTFLOW_BASE_URL": "https://events.example.com"}).base_url == "https://events.example.com"
    assert conf.load({}).base_url == ""


def test_tls_and_ssl_for_mail_together_are_refused_at_start():
    # Django's SMTP backend raises ValueError for the pair on each send: every invitation and password
    # reset mail failed, each only a line in the log.
    with pytest.raises(ImproperlyConfigured, match="EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive"):
        conf.load({"EMAIL_USE_TLS": "on", "EMAIL_USE_SSL": "on"})


def test_the_store_urls_in_use_are_taken():
    settings = conf.load({"REDIS_URL": "rediss://:pw@cache:6380/2", "DATABASE_URL": "postgresql://u:p@db:5433/ef"})
    assert (settings.redis_url, settings.database_url) == ("rediss://:pw@cache:6380/2", "postgresql://u:p@db:5433/ef")


def test_a_retention_interval_longer_than_the_partitions_made_ahead_is_refused_at_start():
    # Only retention makes the log's partitions: run every 8 days with 7 days made ahead, the
    # processor's appends fail for want of a partition from the eighth day on.
    with pytest.raises(ImproperlyConfigured, match="EVENTFLOW_RETENTION_INTERVAL_SECONDS must be less than"):
        conf.load({"EVENTFLOW_RETENTION_INTERVAL_SECONDS": str(8 * 86400)})
    with pytest.raises(ImproperlyConfigured, match=re.escape("EVENTFLOW_LOG_PARTITIONS_AHEAD_DAYS (2) days")):
        conf.load({"EVENTFLOW_RETENTION_INTERVAL_SECONDS": "172800", "EVENTFLOW_LOG_PARTITIONS_AHEAD_DAYS": "2"})
    assert conf.load({"EVENTFLOW_RETENTION_INTERVAL_SECONDS": "86400"}).retention_interval_seconds == 86400


# --- the retention task -----------------------------------------------------------------------------


def test_the_retention_task_is_not_killed_before_its_own_budget_and_soft_limit():
    import inspect

    from eventflow.celery import app
    from streams.retention import retention_run
    from streams.tasks import retention

    task = app.tasks[retention.name]
    budget = inspect.signature(retention_run).parameters["budget_seconds"].default
    # Without a time_limit of its own the task takes the app's hard limit (90 s): the worker process is
    # killed mid-run, long before the soft limit (900 s) or the run's budget (300 s) can stop it cleanly.
    assert task.time_limit > task.soft_time_limit > budget


# --- management commands ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Not A Slug",), "slug"),
        (("fine", "--retention-days", "0"), "retention_days"),
    ],
)
def test_create_stream_refuses_bad_arguments_with_a_clear_message(args, message):
    with pytest.raises(CommandError, match=message):
        _run("create_stream", *args)
    assert not Stream.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("days", ["0", "-3", "100000000"])
def test_create_api_key_refuses_an_expiry_that_is_not_a_positive_number_of_days(stream, days):
    # 0 made a key that never expires (the falsy check), a negative one a key dead on arrival,
    # and a huge one crashed with an OverflowError.
    with pytest.raises(CommandError, match="--expires-in-days"):
        _run("create_api_key", "--stream", stream.slug, "--kind", "ingest", "--expires-in-days", days)
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    "args",
    [
        # No sender was started, and the producer waited forever for room in the queue.
        ("--concurrency", "-1"),
        # nan passed the positive check and crashed on int(nan); inf overflowed.
        ("--rate", "nan"),
        ("--duration", "inf"),
    ],
)
def test_simulate_events_refuses_bad_arguments_instead_of_hanging_or_crashing(args):
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            _run(
                "simulate_events",
                "--stream",
                "s",
                "--key",
                "k",
                "--url",
                "http://127.0.0.1:9",
                "--duration",
                "1",
                *args,
            )
        except BaseException as exc:  # noqa: BLE001 - the test looks at what it was
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert outcome, "simulate_events still runs after 10 s"
    assert isinstance(outcome[0], CommandError), outcome[0]
