"""The Kubernetes and KServe manifests: schema-valid offline, and consistent with the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version
from prometheus_client import CollectorRegistry

from service.metrics import Metrics
from service.server import LIVENESS_SERVICE
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "deploy" / "kubernetes"


def documents(folder: Path) -> dict[str, dict[str, Any]]:
    """Every manifest under `folder`, by kind."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[document["kind"]] = document
    return found


MANIFEST = documents(MANIFESTS)
CORE = ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]


@pytest.mark.parametrize("kind", CORE)
def test_manifests_validate_against_the_kubernetes_schemas(kind: str) -> None:
    kubernetes_validate.validate(MANIFEST[kind], latest_version(), strict=True)  # raises on any error


def container(kind: str = "Deployment") -> dict[str, Any]:
    return dict(MANIFEST[kind]["spec"]["template"]["spec"]["containers"][0])


def test_probes_ask_the_grpc_health_service_and_the_grace_covers_the_drain() -> None:
    defaults = Settings()
    pod = MANIFEST["Deployment"]["spec"]["template"]["spec"]
    main = container()
    for probe in ("startupProbe", "readinessProbe"):
        assert main[probe]["grpc"] == {"port": defaults.grpc_port}  # "" = strict readiness
    assert main["livenessProbe"]["grpc"] == {"port": defaults.grpc_port, "service": LIVENESS_SERVICE}
    env = {item["name"]: item["value"] for item in main["env"]}
    assert pod["terminationGracePeriodSeconds"] > float(env["GAN_GRACE_PERIOD_S"])
    assert pod["securityContext"]["runAsNonRoot"] and main["resources"]["requests"]
    assert {m["mountPath"] for m in main["volumeMounts"]} >= {env["GAN_MODEL_REPOSITORY"]}
    rollout = MANIFEST["Deployment"]["spec"]["strategy"]["rollingUpdate"]
    assert rollout["maxUnavailable"] == 0, "a rollout must never drop below the serving replicas"


def test_service_pdb_and_autoscaler_point_at_the_deployment() -> None:
    labels = MANIFEST["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert MANIFEST["Service"]["spec"]["selector"] == labels
    assert MANIFEST["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    hpa = MANIFEST["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == MANIFEST["Deployment"]["metadata"]["name"]
    custom = next(m["pods"]["metric"]["name"] for m in hpa["metrics"] if m["type"] == "Pods")
    exported = {family.name for family in Metrics(CollectorRegistry()).registry.collect()}
    assert custom in exported, f"the autoscaler scales on {custom}, which the service does not export"
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert {p["targetPort"] for p in MANIFEST["Service"]["spec"]["ports"]} <= set(ports)


def test_kserve_runtime_serves_the_v2_grpc_protocol_from_the_mounted_repository() -> None:
    # KServe's CRDs are not in the Kubernetes schemas, so their shape is checked here.
    runtime, service = MANIFEST["ServingRuntime"], MANIFEST["InferenceService"]
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert "grpc-v2" in runtime["spec"]["protocolVersions"]
    main = runtime["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in main["env"]}
    assert env["GAN_MODEL_REPOSITORY"] == "/mnt/models"  # where KServe's storage initializer puts the model
    assert main["ports"][0]["containerPort"] == int(env["GAN_GRPC_PORT"]) and main["ports"][0]["name"] == "h2c"
    security = main["securityContext"]
    assert (
        security["runAsNonRoot"]
        and not security["allowPrivilegeEscalation"]
        and security["capabilities"]["drop"] == ["ALL"]
    )
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["protocolVersion"] == "grpc-v2"
