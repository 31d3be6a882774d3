"""Production settings: refuse to start without secrets; pass Django's deployment checks."""

from __future__ import annotations

import secrets

import pytest

from tests.subprocesses import child_env, manage


def production_env(**overrides: str | None) -> dict[str, str]:
    values: dict[str, str | None] = {
        "EVENTFLOW_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "events.example.com",
        "DEBUG": None,
    }
    values.update(overrides)
    return child_env(**values)


@pytest.mark.parametrize("secret", [None, ""], ids=["unset", "empty"])
def test_production_refuses_to_start_without_a_secret_key(secret):
    result = manage("check", env=production_env(SECRET_KEY=secret))
    assert result.returncode != 0
    assert "SECRET_KEY must be set when EVENTFLOW_ENV=production" in result.stderr


def test_production_with_its_secrets_passes_the_deployment_checks():
    env = production_env()
    assert len(env["SECRET_KEY"]) >= 50
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_deployment_checks_notice_a_missing_allowed_hosts_and_a_weak_key():
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", env=production_env(ALLOWED_HOSTS=None, SECRET_KEY="weak")
    )
    assert result.returncode != 0
    assert "security.W020" in result.stderr
    assert "security.W009" in result.stderr


def test_development_runs_without_any_secret():
    result = manage("check", env=child_env(EVENTFLOW_ENV=None, SECRET_KEY=None))
    assert result.returncode == 0, result.stderr
