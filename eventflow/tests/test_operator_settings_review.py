"""Settings an operator gets wrong: a production SECRET_KEY, a METRICS_TOKEN from a secrets file, the admin's password."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import Client

from eventflow import conf
from eventflow.management.commands.bootstrap import _admin_ensure
from streams.models import Stream
from tests.fixtures import conf_override
from tests.subprocesses import child_env, manage, python

# --- SECRET_KEY in production ----------------------------------------------------------------------

MISSING = "SECRET_KEY must be set when EVENTFLOW_ENV=production"
PLACEHOLDER = "SECRET_KEY is still the placeholder: set it to a long random value"
BAD_KEYS = [
    pytest.param(None, MISSING, id="unset"),
    pytest.param("", MISSING, id="empty"),
    pytest.param(" \n", MISSING, id="whitespace"),
    # docker-compose.yml's stand-in when .env has none.
    pytest.param("change-me-to-a-long-random-value", PLACEHOLDER, id="placeholder"),
]


def production(secret_key: str | None) -> dict[str, str]:
    return child_env(
        EVENTFLOW_ENV="production",
        SECRET_KEY=secret_key,
        ALLOWED_HOSTS="events.example.com",
        DEBUG=None,
        DJANGO_SETTINGS_MODULE="eventflow.settings",
    )


@pytest.mark.parametrize(("secret_key", "message"), BAD_KEYS)
def test_a_bad_production_secret_key_is_refused_with_its_name(secret_key, message):
    environ = {"EVENTFLOW_ENV": "production"} | ({} if secret_key is None else {"SECRET_KEY": secret_key})

    with pytest.raises(ImproperlyConfigured) as refused:
        conf.load(environ)

    assert str(refused.value) == message


@pytest.mark.parametrize(("secret_key", "message"), BAD_KEYS)
def test_a_bad_production_secret_key_stops_django_setup_with_one_line(secret_key, message):
    done = python("import django; django.setup()", production(secret_key))

    assert done.returncode == 1
    # Was the traceback of eventflow/settings.py's import, ImproperlyConfigured on its last line.
    assert done.stderr.strip() == f"eventflow: {message}"


def test_a_bad_production_secret_key_stops_manage_py_with_one_line():
    done = manage("check", env=production(""))

    assert done.returncode == 1
    assert done.stderr.strip() == f"eventflow: {MISSING}"


def test_a_real_production_secret_key_and_any_development_one_are_taken():
    key = secrets.token_urlsafe(50)

    assert conf.load({"EVENTFLOW_ENV": "production", "SECRET_KEY": key}).secret_key == key
    # Development makes up its own key: none, or the placeholder, still starts.
    assert conf.load({}).secret_key == ""
    assert conf.load({"SECRET_KEY": "change-me"}).secret_key == "change-me"
    done = python(
        "import django; django.setup(); from django.conf import settings; print(len(settings.SECRET_KEY))",
        production(None) | {"EVENTFLOW_ENV": "development"},
    )
    assert done.returncode == 0, done.stderr


# --- METRICS_TOKEN ------------------------------------------------------------------------------------

TOKEN = "scrape-token-" + "from-a-secrets-file"


@pytest.mark.parametrize("raw", [f"{TOKEN}\n", f"  {TOKEN}\r\n", f"\t{TOKEN} "])
def test_the_metrics_token_is_read_without_surrounding_whitespace(raw):
    assert conf.load({"METRICS_TOKEN": raw}).metrics_token == TOKEN


@pytest.mark.django_db
def test_a_metrics_token_ending_in_a_newline_opens_metrics_to_its_bearer(client: Client, settings: Any) -> None:
    # `kubectl create secret --from-file` and `echo … > file` both leave the newline: the token never matched.
    conf_override(settings, metrics_token=conf.load({"METRICS_TOKEN": f"{TOKEN}\n"}).metrics_token)
    conf_override(settings, metrics_allow_networks=())

    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404


@pytest.mark.django_db
def test_an_all_whitespace_metrics_token_is_unset_and_opens_nothing(client: Client, settings: Any) -> None:
    loaded = conf.load({"METRICS_TOKEN": " \n"})
    assert loaded.metrics_token == ""
    conf_override(settings, metrics_token=loaded.metrics_token)
    conf_override(settings, metrics_allow_networks=())

    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer  ").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer \n").status_code == 404


# --- EVENTFLOW_ADMIN_PASSWORD -------------------------------------------------------------------------

WEAK = [
    pytest.param("admin", "This password is too short", id="short"),
    pytest.param("password123", "This password is too common", id="common"),
    pytest.param("4815162342108", "This password is entirely numeric", id="numeric"),
    # The username itself, which the similarity validator compares with.
    pytest.param("eventflow-operator", "The password is too similar to the username", id="like-the-username"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("password", "reason"), WEAK)
def test_a_weak_admin_password_is_refused_before_anything_is_made(settings: Any, password: str, reason: str) -> None:
    conf_override(settings, admin_user="eventflow-operator", admin_password=password)

    with pytest.raises(SystemExit) as stopped:
        call_command("bootstrap")

    message = str(stopped.value.code)
    assert message.startswith("eventflow: EVENTFLOW_ADMIN_PASSWORD is refused by the password validators: ")
    assert reason in message
    assert "\n" not in message
    assert not get_user_model().objects.exists()
    assert not Stream.objects.exists()


@pytest.mark.django_db
def test_a_strong_admin_password_makes_the_admin(settings: Any) -> None:
    password = secrets.token_urlsafe(16)
    conf_override(settings, admin_user="eventflow-operator", admin_password=password)

    username, shown, created, from_env = _admin_ensure()

    assert (username, shown, created, from_env) == ("eventflow-operator", None, True, True)
    admin = get_user_model().objects.get(username="eventflow-operator")
    assert admin.is_superuser
    assert admin.check_password(password)


@pytest.mark.django_db
def test_an_existing_superuser_is_kept_whatever_the_setting_says(settings: Any) -> None:
    get_user_model().objects.create_superuser(username="root", email="root@example.com", password=None)
    conf_override(settings, admin_password="admin")

    assert _admin_ensure() == ("root", None, False, False)


@pytest.mark.django_db
def test_a_weak_admin_password_stops_manage_py_bootstrap_with_one_line() -> None:
    # The child sees the test database as migrated, with no superuser: it would make one.
    done = manage("bootstrap", env=child_env(EVENTFLOW_ADMIN_PASSWORD="admin"))

    assert done.returncode == 1
    assert done.stderr.strip() == (
        "eventflow: EVENTFLOW_ADMIN_PASSWORD is refused by the password validators: "
        # EVENTFLOW_ADMIN_USER's default is admin too.
        "The password is too similar to the username. This password is too short. It must contain at least 8 characters. This password is too common."
    )
