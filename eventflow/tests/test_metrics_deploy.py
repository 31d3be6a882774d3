"""deploy/prometheus and deploy/grafana: rules that promtool accepts, and every metric they name exists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures import conf_override
from tests.test_deploy_image import compose_config

BASE_DIR = Path(__file__).resolve().parents[2]
PROMETHEUS = BASE_DIR / "deploy" / "prometheus"
GRAFANA = BASE_DIR / "deploy" / "grafana"
METRIC = re.compile(r"\beventflow_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum")


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads((GRAFANA / "dashboards" / "eventflow.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    expressions += [v["query"]["query"] for v in dashboard["templating"]["list"]]
    return expressions


def _exposed_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def _missing(expressions: list[str], exposed: set[str]) -> set[str]:
    named = {name for expression in expressions for name in METRIC.findall(expression)}
    return {
        name
        for name in named
        if name not in exposed and not any(name.endswith(s) and name[: -len(s)] in exposed for s in SUFFIXES)
    }


def test_the_alerts_asked_for_are_there():
    names = {rule["alert"] for rule in _rules()}
    assert names == {
        "EventFlowInboxBacklogGrowing",
        "EventFlowDeadLettersRising",
        "EventFlowKafkaBridgeDown",
        "EventFlowConsumerLagHigh",
        "EventFlowWorkerHeartbeatStale",
        "EventFlowHighErrorRate",
        "EventFlowRetentionStalled",
    }
    runbook = (BASE_DIR / "docs" / "operations.md").read_text()
    for rule in _rules():
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{rule['alert'].lower()}"
        assert f"### {rule['alert']}\n" in runbook


@pytest.mark.django_db
def test_every_metric_the_rules_and_the_dashboard_name_is_exposed(client, settings, stream):
    conf_override(settings, metrics_token="deploy-check")
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer deploy-check")
    assert response.status_code == 200
    exposed = _exposed_names(response.content.decode())

    assert _missing([rule["expr"] for rule in _rules()], exposed) == set()
    assert _missing(_dashboard_expressions(), exposed) == set()
    # The check can fail: a name that is not exposed is found.
    assert _missing(["rate(eventflow_no_such_metric_total[5m])"], exposed) == {"eventflow_no_such_metric_total"}


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard():
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (datasource,) = source["datasources"]
    dashboard = json.loads((GRAFANA / "dashboards" / "eventflow.json").read_text())
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]

    assert datasource["url"] == "http://prometheus:9090"
    assert rows == ["Ingestion", "Processing", "Consumers", "Webhooks", "HTTP"]
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == datasource["uid"]


def test_compose_runs_prometheus_and_grafana_on_pinned_images(tmp_path: Path):
    done = compose_config(tmp_path)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]

    for name in ("prometheus", "grafana"):
        image = services[name]["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), image
    prometheus_address = services["prometheus"]["networks"]["default"]["ipv4_address"]
    # The host Prometheus scrapes by is one Django answers to.
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"][0]
    (target,) = scrape["static_configs"][0]["targets"]
    assert target.split(":")[0] in services["web"]["environment"]["ALLOWED_HOSTS"].split(",")
    # /metrics is opened to the stack's Prometheus alone.
    for name in ("web", "worker", "webhooks", "beat"):
        assert services[name]["environment"]["METRICS_ALLOW_NETWORKS"] == f"{prometheus_address}/32"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (.ci/run installs it)")
def test_promtool_accepts_the_rules_and_the_configuration():
    rules = subprocess.run(
        ["promtool", "check", "rules", str(PROMETHEUS / "rules.yml")], capture_output=True, text=True, check=False
    )
    config = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    broken = subprocess.run(
        ["promtool", "check", "rules", "/dev/stdin"],
        input="groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: rate(eventflow_x[5m]\n",
        capture_output=True,
        text=True,
        check=False,
    )

    assert rules.returncode == 0, rules.stdout + rules.stderr
    written = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    count = sum(len(group["rules"]) for group in written["groups"])
    # promtool read every rule the file holds (a rule it skipped would be missing from its count).
    assert count >= 6
    assert f"SUCCESS: {count} rules found" in rules.stdout
    assert config.returncode == 0, config.stdout + config.stderr
    assert broken.returncode != 0
