"""TLS and mutual TLS from certificate files in the settings, with certificates made at test time."""

from __future__ import annotations

import datetime
import functools
import logging
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from prometheus_client import CollectorRegistry

from gan_client.cli import main
from gan_client.client import GeneratorClient, TLSConfig
from service import healthcheck
from service.metrics import Metrics
from service.server import report_certificate_expiry
from service.settings import SettingsError, load_settings
from tests.certificates import Certificates, make_certificates
from tests.conftest import ServerThread, scrape


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def list_names(target: str, tls: TLSConfig | None) -> list[str]:
    with GeneratorClient(target, timeout=5, retries=0, tls=tls) as client:
        return [model.name for model in client.list_models()]


def test_tls_serves_clients_that_trust_its_ca_and_refuses_plaintext(
    model_repository: Path, certificates: Certificates
) -> None:
    server = certificates.server
    with ServerThread(model_repository=model_repository, tls_cert_file=server.cert, tls_key_file=server.key) as running:
        assert "digits" in list_names(running.target, TLSConfig(ca_file=certificates.ca))
        with pytest.raises(grpc.RpcError) as plaintext:
            list_names(running.target, None)
        assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError):  # the system roots do not know the test CA
            list_names(running.target, TLSConfig())
        not_after = x509.load_pem_x509_certificate(server.cert.read_bytes()).not_valid_after_utc
        assert scrape(running)["gan_tls_certificate_expiry_timestamp_seconds"] == not_after.timestamp()


def test_an_expired_or_expiring_certificate_is_warned_about_at_start(
    certificates: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    chain = certificates.server.cert.read_bytes()
    not_after = x509.load_pem_x509_certificate(chain).not_valid_after_utc
    metrics = Metrics(CollectorRegistry())
    for now, warned in (
        (not_after + datetime.timedelta(days=1), "expired on"),
        (not_after - datetime.timedelta(days=10), "in 10 days"),
        (not_after - datetime.timedelta(days=60), None),
    ):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="service.server"):
            report_certificate_expiry(chain, metrics, now)
        messages = [record.getMessage() for record in caplog.records]
        assert messages == [] if warned is None else (len(messages) == 1 and warned in messages[0]), messages
    assert metrics.tls_certificate_expiry._value.get() == not_after.timestamp()


def test_mutual_tls_needs_a_client_certificate_from_the_ca(
    model_repository: Path, certificates: Certificates, tmp_path: Path
) -> None:
    server, client, stranger = certificates.server, certificates.client, certificates.stranger
    settings = {"tls_cert_file": server.cert, "tls_key_file": server.key, "tls_client_ca_file": certificates.ca}
    with ServerThread(model_repository=model_repository, **settings) as running:
        assert "digits" in list_names(running.target, TLSConfig(certificates.ca, client.cert, client.key))
        for refused in (TLSConfig(certificates.ca), TLSConfig(certificates.ca, stranger.cert, stranger.key)):
            with pytest.raises(grpc.RpcError):
                list_names(running.target, refused)
        health = functools.partial(healthcheck.check, running.target, ca_file=certificates.ca)
        assert health(client_pair=(client.cert, client.key)) == "SERVING", "the container check with a client pair"
        with pytest.raises(grpc.RpcError):
            health()
        environment = {
            "GAN_GRPC_PORT": running.target.rsplit(":", 1)[1],
            "GAN_HEALTHCHECK_CA_FILE": str(certificates.ca),
        }
        with pytest.MonkeyPatch.context() as patch:  # the container's check: python -m service.healthcheck
            for name, value in environment.items():
                patch.setenv(name, value)
            patch.setenv("GAN_HEALTHCHECK_CERT_FILE", str(client.cert))
            assert healthcheck.main() == 1, "a certificate without its key"
            patch.setenv("GAN_HEALTHCHECK_KEY_FILE", str(client.key))
            assert healthcheck.main() == 0
        out = tmp_path / "grid.png"
        tls_flags = ["--tls-ca", str(certificates.ca), "--tls-cert", str(client.cert), "--tls-key", str(client.key)]
        argv = ["--target", running.target, *tls_flags, "generate", "--model", "digits", "--count", "4"]
        assert main([*argv, "--out", str(out)]) == 0 and out.exists()


def test_the_container_check_accepts_a_certificate_issued_for_the_service_name(
    model_repository: Path, tmp_path: Path
) -> None:
    certificates = make_certificates(tmp_path / "certs", server_name="gan-serve.example")  # not localhost
    settings = {"tls_cert_file": certificates.server.cert, "tls_key_file": certificates.server.key}
    with ServerThread(model_repository=model_repository, **settings) as running, pytest.MonkeyPatch.context() as patch:
        patch.setenv("GAN_GRPC_PORT", running.target.rsplit(":", 1)[1])
        patch.setenv("GAN_HEALTHCHECK_CA_FILE", str(certificates.ca))
        assert healthcheck.main() == 1, "the certificate does not name localhost"
        patch.setenv("GAN_HEALTHCHECK_SERVER_NAME", "gan-serve.example")
        assert healthcheck.main() == 0
        by_name = f"localhost:{running.target.rsplit(':', 1)[1]}"  # the certificate names 127.0.0.1, not localhost
        assert "digits" in list_names(by_name, TLSConfig(certificates.ca, server_name="gan-serve.example"))
        with pytest.raises(grpc.RpcError):  # the client checks the name too
            list_names(by_name, TLSConfig(certificates.ca))
        flags = ["--target", by_name, "--tls-ca", str(certificates.ca), "--tls-server-name", "gan-serve.example"]
        assert main([*flags, "list"]) == 0


def test_tls_settings_that_cannot_work_are_refused_by_name(certificates: Certificates, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="tls_cert_file and tls_key_file"):
        load_settings(tls_cert_file=certificates.server.cert)
    with pytest.raises(SettingsError, match="tls_client_ca_file"):
        load_settings(tls_client_ca_file=certificates.ca)
    not_pem = tmp_path / "cert.pem"
    not_pem.write_text("hello")
    from service.server import server_credentials

    with pytest.raises(OSError, match=r"tls_cert_file .*not a PEM file"):
        server_credentials(load_settings(tls_cert_file=not_pem, tls_key_file=certificates.server.key))
    with pytest.raises(OSError, match=r"tls_key_file .*cannot read"):
        server_credentials(load_settings(tls_cert_file=certificates.server.cert, tls_key_file=tmp_path / "missing"))
