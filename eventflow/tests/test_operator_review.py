"""What an operator touches: a bad setting at start, the development launcher's command line and port."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from eventflow import conf
from tests.subprocesses import BASE_DIR, child_env, manage

# --- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        # logging's set-up failed with "Unable to configure formatter 'plain'", naming no variable.
        "%(asctime",
        "events",
        # Accepted, and then every log line became a "--- Logging error ---" (KeyError: 'host').
        "%(message)s %(host)s",
    ],
)
def test_a_log_format_that_cannot_format_a_line_is_refused_at_start_with_its_name(raw):
    with pytest.raises(ImproperlyConfigured, match=re.escape("LOG_FORMAT must be json or a Python logging format")):
        conf.load({"LOG_FORMAT": raw})


@pytest.mark.parametrize("raw", ["json", "JSON", "%(levelname)s %(message)s", "%(message)s %(request_id)s"])
def test_json_and_formats_of_the_fields_a_record_has_are_taken(raw):
    assert conf.load({"LOG_FORMAT": raw}).log_format == raw


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["manage.py", "check"], "EVENTFLOW_MAX_ATTEMPTS must be at least 1, got 0"),
        (["-m", "eventflow", "web"], "EVENTFLOW_MAX_ATTEMPTS must be at least 1, got 0"),
        (["-m", "launcher", "up"], "EVENTFLOW_MAX_ATTEMPTS must be at least 1, got 0"),
    ],
)
def test_a_bad_setting_stops_a_process_with_one_line_naming_it(argv, message):
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=BASE_DIR,
        env=child_env(EVENTFLOW_MAX_ATTEMPTS="0"),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    # Was a traceback of Django's settings import (or the package's), its message on the last of ~20 lines.
    assert done.stderr.strip() == f"eventflow: {message}"


def test_a_log_format_that_cannot_format_a_line_stops_manage_py_with_its_name():
    done = manage("check", env=child_env(LOG_FORMAT="%(message)s %(host)s"))

    assert done.returncode == 1
    assert done.stderr.strip().startswith("eventflow: LOG_FORMAT must be json")
    assert "Traceback" not in done.stderr


# --- the development launcher -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # Was an OverflowError traceback from the port check.
        (["--port", "70000"], "--port must be from 1 to 65535, got 70000"),
        (["--port", "0"], "--port must be from 1 to 65535, got 0"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
        (["--worker-concurrency", "-2"], "--worker-concurrency must be at least 1, got -2"),
    ],
)
def test_the_launcher_refuses_numbers_its_settings_would_refuse(monkeypatch, capsys, args, message):
    from launcher import __main__ as launcher

    monkeypatch.setattr(sys, "argv", ["launcher", "up", *args])
    monkeypatch.setattr(launcher, "up", lambda **_: pytest.fail("started with a bad argument"))

    with pytest.raises(SystemExit) as stopped:
        launcher.main()

    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_the_launcher_says_when_the_port_is_taken():
    from launcher.__main__ import _listen_problem

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        problem = _listen_problem("127.0.0.1", port)

    assert problem == f"port {port} is in use on 127.0.0.1; choose another one, e.g. `PORT={port + 1} make run`"
    assert _listen_problem("127.0.0.1", port) is None


@pytest.mark.parametrize(
    ("host", "message"),
    [
        # Both were reported as "port … is in use", sending the operator after the wrong setting.
        ("nosuch.invalid", "HOST 'nosuch.invalid' is not an address of this machine"),
        ("192.0.2.1", "cannot listen on 192.0.2.1:"),
    ],
)
def test_the_launcher_names_a_host_it_cannot_listen_on(host, message):
    from launcher.__main__ import _listen_problem
    from launcher.devservices import free_port

    problem = _listen_problem(host, free_port())

    assert problem is not None
    assert problem.startswith(message)
    assert "in use" not in problem
