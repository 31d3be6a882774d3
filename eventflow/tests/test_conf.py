"""EventFlow's settings are read once, in eventflow/conf.py: typed, bounded, documented, all of them used."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from eventflow import conf
from tests.subprocesses import child_env, manage

BASE_DIR = conf.BASE_DIR
APPS = ("eventflow", "streams", "ingestion", "consumers", "analytics")
# Where the environment may be read: the settings modules themselves, and gunicorn's master,
# which imports no EventFlow module (eventflow/gunicorn_conf.py says why).
ENVIRONMENT_READERS = {
    "eventflow/conf.py",
    "eventflow/settings.py",
    "eventflow/gunicorn_conf.py",
    # The processes' command line, which sets the environment of the program it becomes.
    "eventflow/__main__.py",
}
# Django settings that hold an EventFlow setting under its Django name (DEBUG, EMAIL_HOST, …)
# are Django's to read; these names are EventFlow's and live in conf.py only.
EVENTFLOW_SETTING = re.compile(
    r"^(EVENTFLOW\w*|METRICS_\w+|REDIS_\w+|CACHE_KEY_PREFIX|DATABASE_URL|LOG_FORMAT|LOG_LEVEL)$"
)


def app_modules() -> list[Path]:
    found = []
    for app in APPS:
        for path in (BASE_DIR / app).rglob("*.py"):
            parts = path.relative_to(BASE_DIR).parts
            if "tests" in parts or "migrations" in parts:
                continue
            found.append(path)
    return found


def direct_reads(path: Path) -> list[str]:
    """``os.environ`` / ``os.getenv`` reads and ``settings.<EventFlow setting>`` in one module, as "line: what"."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines), filename=str(path))):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
            continue
        if node.value.id == "os" and node.attr in ("environ", "getenv"):
            # os.environ.setdefault("DJANGO_SETTINGS_MODULE", …) names the settings module: not a setting.
            if "DJANGO_SETTINGS_MODULE" not in lines[node.lineno - 1]:
                found.append(f"{node.lineno}: os.{node.attr}")
        if node.value.id == "settings" and EVENTFLOW_SETTING.match(node.attr):
            found.append(f"{node.lineno}: settings.{node.attr}")
    return sorted(found)


def test_no_app_module_reads_the_environment_or_an_eventflow_setting_directly():
    offenders = [
        f"{path.relative_to(BASE_DIR)}:{read}"
        for path in app_modules()
        if str(path.relative_to(BASE_DIR)) not in ENVIRONMENT_READERS
        for read in direct_reads(path)
    ]
    assert offenders == [], "read them with eventflow.conf.get():\n" + "\n".join(offenders)


def test_the_check_finds_a_direct_read(tmp_path):
    module = tmp_path / "module.py"
    module.write_text(
        "import os\nfrom django.conf import settings\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'eventflow.settings')\n"
        "a = os.environ.get('X')\nb = settings.EVENTFLOW_WEBHOOK_ALLOW_LOOPBACK\nc = settings.DEBUG\n"
    )
    assert direct_reads(module) == ["4: os.environ", "5: settings.EVENTFLOW_WEBHOOK_ALLOW_LOOPBACK"]


def readme_setting_names() -> set[str]:
    """The variables named in the first cell of the rows of the README's Configuration tables."""
    readme = (BASE_DIR / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        if "eventflow/settings.py" in first:
            continue  # Django settings set in code, not read from the environment
        names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first))
    return names


def test_the_readme_lists_exactly_the_settings_conf_reads():
    declared = set(conf.names()) | set(conf.READ_BY_OPENTELEMETRY)
    documented = readme_setting_names()
    assert sorted(declared - documented) == [], "add these to the README's Configuration table"
    assert sorted(documented - declared) == [], "the README lists these, but eventflow/conf.py does not read them"


def test_every_setting_is_read_somewhere():
    """A setting no code reads is a promise the README makes and nothing keeps."""
    # conf.py counts for what its own properties read (``self.environment``); its fields are declared, not read.
    sources = app_modules() + sorted((BASE_DIR / "launcher").rglob("*.py"))
    code = "\n".join(path.read_text() for path in sources)
    unread = [name for name in conf.Settings.__dataclass_fields__ if not re.search(rf"\.{name}\b", code)]
    assert unread == []


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"EVENTFLOW_PROCESS_BATCH_SIZE": "-5"}, "EVENTFLOW_PROCESS_BATCH_SIZE must be at least 1, got -5"),
        ({"EVENTFLOW_MAX_ATTEMPTS": "three"}, "EVENTFLOW_MAX_ATTEMPTS must be an integer, got 'three'"),
        ({"EVENTFLOW_ANALYTICS_CACHE_SECONDS": "600"}, "EVENTFLOW_ANALYTICS_CACHE_SECONDS must be at most 60"),
        # A POST longer than the delivery's lease could be sent twice.
        (
            {"EVENTFLOW_WEBHOOK_TOTAL_TIMEOUT_SECONDS": "90"},
            "EVENTFLOW_WEBHOOK_TOTAL_TIMEOUT_SECONDS must be at most 45",
        ),
        ({"EVENTFLOW_WEBHOOK_ALLOW_LOOPBACK": "sure"}, "EVENTFLOW_WEBHOOK_ALLOW_LOOPBACK must be on or off"),
        ({"EVENTFLOW_ENV": "prod"}, "EVENTFLOW_ENV must be one of development, production"),
        ({"METRICS_ALLOW_NETWORKS": "10.0.0.0/8,nowhere"}, "METRICS_ALLOW_NETWORKS: 'nowhere' is not an address"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of"),
    ],
)
def test_a_bad_value_is_refused_with_its_name(environ, message):
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        conf.load(environ)


def test_values_are_parsed_by_their_type_and_empty_means_unset():
    settings = conf.load(
        {
            "EVENTFLOW_PROCESS_BATCH_SIZE": "250",
            "EVENTFLOW_RETRY_BASE_SECONDS": "0.5",
            "EVENTFLOW_WEBHOOK_ALLOW_LOOPBACK": "on",
            "ALLOWED_HOSTS": "a.example.com, b.example.com,",
            "EVENTFLOW_MAX_ATTEMPTS": "",
        }
    )
    assert settings.process_batch_size == 250
    assert settings.retry_base_seconds == 0.5
    assert settings.webhook_allow_loopback is True
    assert settings.allowed_hosts == ("a.example.com", "b.example.com")
    assert settings.max_attempts == 5
    assert conf.load({}).allowed_hosts is None


def test_a_process_with_a_bad_setting_stops_at_start_up():
    result = manage("check", env=child_env(EVENTFLOW_PROCESS_BATCH_SIZE="-1"))
    assert result.returncode != 0
    assert "EVENTFLOW_PROCESS_BATCH_SIZE must be at least 1, got -1" in result.stderr


@pytest.mark.parametrize("server", ["gunicorn", "granian"])
def test_the_web_server_prints_a_line_per_request_only_when_asked(monkeypatch, server):
    from eventflow.__main__ import GRANIAN_ACCESS_LOG, GUNICORN_ACCESS_LOG, web_command

    access_log = GRANIAN_ACCESS_LOG if server == "granian" else GUNICORN_ACCESS_LOG
    monkeypatch.setattr(conf, "_at_start", conf.load({}))
    quiet = web_command(port=8000, workers=1, server=server)
    assert not any(part.startswith("--access-log") for part in quiet)
    monkeypatch.setattr(conf, "_at_start", conf.load({"WEB_ACCESS_LOG": "on"}))
    logged = web_command(port=8000, workers=1, server=server)
    start = logged.index(access_log[0])
    assert logged[start : start + len(access_log)] == access_log
    assert logged[:start] + logged[start + len(access_log) :] == quiet
