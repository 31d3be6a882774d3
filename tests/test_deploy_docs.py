"""docs/operations.md keeps up with what it describes: the README's settings table, the files
it names, and a runbook entry for every alert of deploy/prometheus/rules.yml (and none for
an alert that does not exist)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

BASE_DIR = Path(__file__).resolve().parent.parent
OPERATIONS = BASE_DIR / "docs" / "operations.md"
RULES = BASE_DIR / "deploy" / "prometheus" / "rules.yml"


def runbook_entries() -> set[str]:
    text = OPERATIONS.read_text()
    runbook = text.split("\n## Runbook\n", 1)[1]
    return set(re.findall(r"^### (\S+)$", runbook, flags=re.MULTILINE))


def test_settings_point_to_the_readme_table() -> None:
    text = OPERATIONS.read_text()
    assert "(../README.md#configuration)" in text
    assert "\n## Configuration\n" in (BASE_DIR / "README.md").read_text()


def test_named_files_exist() -> None:
    text = OPERATIONS.read_text()
    named = set(re.findall(r"`((?:deploy|tests|\.github)/[\w./-]+)`", text))
    assert "deploy/argocd/application.yaml" in named
    for path in named:
        if path.startswith(("deploy/prometheus", "deploy/grafana")) and not RULES.exists():
            continue  # the monitoring files and their own tests come together
        assert (BASE_DIR / path).exists(), path


def test_every_alert_has_a_runbook_entry() -> None:
    if not RULES.exists():
        pytest.skip("deploy/prometheus/rules.yml is not there")
    rules = yaml.safe_load(RULES.read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    assert alerts
    assert runbook_entries() == alerts


def test_each_alert_links_its_runbook_entry() -> None:
    if not RULES.exists():
        pytest.skip("deploy/prometheus/rules.yml is not there")
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                # GitHub's anchor of a heading: lower case.
                assert rule["annotations"]["runbook"] == f"docs/operations.md#{rule['alert'].lower()}"
