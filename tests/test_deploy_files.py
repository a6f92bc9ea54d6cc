"""docker-compose.yml, the Dockerfile and the Prometheus config parse and agree with the service."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from service.settings import Settings
from tests.conftest import ServerThread

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_ports_match_service_settings() -> None:
    service = compose()["services"]["gan-serve"]
    environment = service["environment"]
    defaults = Settings()
    assert int(environment["GAN_GRPC_PORT"]) == defaults.grpc_port
    assert int(environment["GAN_METRICS_PORT"]) == defaults.metrics_port
    published = {int(p.split(":")[1]) for p in service["ports"]}
    assert published == {defaults.grpc_port, defaults.metrics_port}
    mount = next(v for v in service["volumes"] if v.startswith("./models:"))
    assert mount.split(":")[1] == environment["GAN_MODEL_REPOSITORY"]
    assert (ROOT / service["build"]["dockerfile"]).is_file()


def test_prometheus_scrapes_the_metrics_port() -> None:
    prometheus = compose()["services"]["prometheus"]
    host_config = next(v for v in prometheus["volumes"] if "prometheus.yml" in v).split(":")[0]
    config = yaml.safe_load((ROOT / host_config).read_text())
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"gan-serve:{Settings().metrics_port}"]


def test_dockerfile_exposes_the_ports_and_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    defaults = Settings()
    assert f"EXPOSE {defaults.grpc_port} {defaults.metrics_port}" in dockerfile
    assert "USER gan" in dockerfile and 'CMD ["gan-serve"]' in dockerfile
    assert "torch" not in dockerfile.split("pip wheel")[1].split("\n")[0]


def test_the_image_checks_its_health_over_grpc_and_the_gpu_profile_reserves_a_gpu() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and '"service.healthcheck"' in dockerfile
    assert dockerfile.count("\nFROM ") == 2  # build stage, then the runtime stage
    gpu = compose()["services"]["gan-serve-gpu"]
    assert (
        gpu["profiles"] == ["gpu"]
        and gpu["build"]["dockerfile"] == compose()["services"]["gan-serve"]["build"]["dockerfile"]
    )
    base = gpu["build"]["args"]["BASE_IMAGE"]
    assert base.startswith("nvidia/cuda:13.") and "cudnn" in base  # onnxruntime-gpu needs CUDA 13 and cuDNN 9
    assert "ARG BASE_IMAGE=" in dockerfile and dockerfile.count("FROM ${BASE_IMAGE}") == 2
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert gpu["environment"]["GAN_PROVIDER"] == "cuda"
    grace = int(compose()["services"]["gan-serve"]["stop_grace_period"].removesuffix("s"))
    assert grace > Settings().grace_period_s  # the drain ends before docker sends SIGKILL


def test_the_healthcheck_reports_serving_and_fails_when_nothing_listens(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service import healthcheck

    assert healthcheck.check(server.target) == "SERVING"
    monkeypatch.setenv("GAN_GRPC_PORT", str(server.server.grpc_port))
    monkeypatch.delenv("GAN_TLS_CERT_FILE", raising=False)
    assert healthcheck.main() == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("GAN_GRPC_PORT", str(probe.getsockname()[1]))
    assert healthcheck.main() == 1
    assert "unreachable" in capsys.readouterr().err


def test_the_healthcheck_reaches_a_server_bound_to_one_address(
    model_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service import healthcheck

    assert healthcheck.local_address("0.0.0.0") == "localhost" and healthcheck.local_address("::") == "localhost"
    assert healthcheck.local_address("fd00::5") == "[fd00::5]"
    with ServerThread(model_repository=model_repository, host="127.0.0.2") as bound:  # not on 127.0.0.1
        monkeypatch.setenv("GAN_GRPC_PORT", str(bound.server.grpc_port))
        monkeypatch.setenv("GAN_HOST", "127.0.0.2")
        monkeypatch.delenv("GAN_TLS_CERT_FILE", raising=False)
        assert healthcheck.main() == 0
