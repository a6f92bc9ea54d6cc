"""Wiring: repository, batchers, both APIs, health, reflection and metrics on one server."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from threading import Thread
from wsgiref.simple_server import WSGIServer

import grpc
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from gan.v1 import generator_pb2, generator_pb2_grpc
from inference import grpc_service_pb2, grpc_service_pb2_grpc
from service import collector
from service.auth import TokenAuth, read_tokens
from service.call_guard import CallGuard, GuardedServices
from service.generation import GenerationService
from service.inference_servicer import InferenceServicer
from service.metrics import Metrics
from service.repository import Repository
from service.servicer import GeneratorServicer
from service.settings import Settings
from service.translation import TranslateLimits, TranslationService
from service.workers import start_metrics_http

log = logging.getLogger(__name__)

GENERATOR_SERVICE = generator_pb2.DESCRIPTOR.services_by_name["GeneratorService"].full_name
INFERENCE_SERVICE = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
HEALTH_SERVICES = ("", GENERATOR_SERVICE, INFERENCE_SERVICE)  # "" is the server as a whole
# SERVING whenever the process answers at all: for liveness probes, which must not restart
# a server that is merely not ready (a model still loading, a failed reload being retried).
LIVENESS_SERVICE = "liveness"


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """Message limits set explicitly: generated images can be large, requests are small."""
    return [
        ("grpc.max_send_message_length", settings.max_reply_mib * 2**20),
        ("grpc.max_receive_message_length", settings.max_request_mib * 2**20),
        # Only the workers of one supervisor share a port (service/workers.py checks it is free first).
        ("grpc.so_reuseport", 0 if settings.worker_index is None else 1),
    ]


@dataclass
class RunningServer:
    """A started service; `stop` drains it."""

    settings: Settings
    grpc_server: grpc.aio.Server
    grpc_port: int
    metrics_port: int
    repository: Repository
    health: health.aio.HealthServicer
    metrics: Metrics
    guard: CallGuard
    _metrics_http: tuple[WSGIServer, Thread] | None  # None in a worker: its supervisor serves /metrics
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, finish the accepted ones within `grace` seconds, release everything."""
        await self.health.enter_graceful_shutdown()
        self.metrics.server_ready.set(0)
        # New calls get UNAVAILABLE (clients retry elsewhere) while the running ones finish with
        # their models still loaded; only then does the port close. Closing it at once would
        # leave calls that reached the server but not yet a handler to end as CANCELLED.
        grace_s = self.settings.grace_period_s if grace is None else grace
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        self.guard.refuse_new_calls()
        await self.guard.wait_for_running_calls(min(self.settings.drain_refuse_s, grace_s), deadline)
        await self.grpc_server.stop(max(0.0, deadline - loop.time()))
        await self.repository.close()
        if self._metrics_http is not None:
            http_server, thread = self._metrics_http
            http_server.shutdown()
            http_server.server_close()
            thread.join(timeout=5)

    async def wait(self) -> None:
        await self.grpc_server.wait_for_termination()

    def publish_health(self) -> None:
        """Every service is SERVING exactly when the repository is ready (strict readiness)."""
        ready = self.repository.ready()
        self.metrics.server_ready.set(1 if ready else 0)
        task = asyncio.get_running_loop().create_task(_set_health(self.health, ready))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _set_health(servicer: health.aio.HealthServicer, ready: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in HEALTH_SERVICES:
        await servicer.set(name, status)


async def start_server(settings: Settings, registry: CollectorRegistry | None = None) -> RunningServer:
    """Load every model, then start serving gRPC and /metrics. Raises ModelLoadError on a bad repository."""
    metrics = Metrics(registry or CollectorRegistry())
    repository = Repository(settings, metrics)
    await repository.start()

    try:
        guard = CallGuard(metrics, settings.max_concurrent_calls)
        interceptors = interceptors_for(settings, metrics)
    except OSError:
        await repository.close()
        raise
    server = grpc.aio.server(interceptors=interceptors, options=server_options(settings))
    generation = GenerationService(repository, settings.max_count, settings.max_reply_mib * 2**20)
    limits = TranslateLimits(
        settings.translate_max_images,
        settings.translate_max_image_bytes,
        settings.translate_max_pixels,
        settings.max_reply_mib * 2**20,
    )
    translation = TranslationService(repository, limits)
    services = GuardedServices(server, guard)
    generator_pb2_grpc.add_GeneratorServiceServicer_to_server(
        GeneratorServicer(repository, generation, translation, metrics, settings.max_count), services
    )
    grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(repository, metrics, settings), services
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, services)
    services.check_complete()
    names = [GENERATOR_SERVICE, INFERENCE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    address = f"{_host(settings.host)}:{settings.grpc_port}"
    try:
        credentials = server_credentials(settings)
    except OSError:
        await repository.close()
        raise
    if settings.tls_cert_file is not None:
        report_certificate_expiry(settings.tls_cert_file.read_bytes(), metrics)
    try:
        grpc_port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError:  # grpcio >= 1.85 raises where older versions returned port 0
        grpc_port = 0
    if grpc_port == 0:
        await repository.close()
        tls = "; or the TLS certificate and key do not load (GAN_TLS_CERT_FILE, GAN_TLS_KEY_FILE)"
        tls = tls if credentials else ""
        raise OSError(f"cannot bind gRPC port {settings.host}:{settings.grpc_port}; is it in use? (GAN_GRPC_PORT){tls}")

    metrics_http = None
    if settings.worker_index is None:
        try:
            metrics_http = start_metrics_http(metrics.registry, settings.host, settings.metrics_port)
        except OSError:
            await repository.close()
            raise
    await server.start()
    await _set_health(health_servicer, repository.ready())
    await health_servicer.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    metrics.server_ready.set(1 if repository.ready() else 0)
    metrics_port = metrics_http[0].server_port if metrics_http is not None else 0
    running = RunningServer(
        settings, server, grpc_port, metrics_port, repository, health_servicer, metrics, guard, metrics_http
    )
    repository.on_change = running.publish_health
    collector.settle()  # what start-up loaded lives as long as the server: out of the collector's way
    metrics_at = f"{settings.host}:{metrics_port}" if metrics_http is not None else "the supervisor"
    log.info("serving gRPC on %s:%d, metrics on %s", settings.host, grpc_port, metrics_at)
    return running


def interceptors_for(settings: Settings, metrics: Metrics) -> list[grpc.aio.ServerInterceptor]:
    """Token authentication when a token file is set (the call guard wraps the handlers themselves)."""
    _warn_if_model_control_is_open(settings)
    if settings.auth_token_file is None and settings.admin_token_file is None:
        return []
    users = read_tokens(settings.auth_token_file, "auth_token_file") if settings.auth_token_file else ()
    admins = read_tokens(settings.admin_token_file, "admin_token_file") if settings.admin_token_file else ()
    return [TokenAuth(users, admins, metrics)]


def _warn_if_model_control_is_open(settings: Settings) -> None:
    """Explicit model control without admin tokens lets every caller load and unload models: allowed, but said."""
    if settings.model_control_mode != "explicit" or settings.admin_token_file is not None:
        return
    who = "every client with a token" if settings.auth_token_file is not None else "anyone who reaches the port"
    log.warning(
        "model control is explicit and %s may load and unload models; set GAN_ADMIN_TOKEN_FILE to keep that "
        "to operators",
        who,
    )


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS (or mutual TLS) credentials from the settings' PEM files; None serves plaintext."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    chain = _read_pem(settings.tls_cert_file, "tls_cert_file")
    key = _read_pem(settings.tls_key_file, "tls_key_file")
    client_ca = _read_pem(settings.tls_client_ca_file, "tls_client_ca_file") if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=client_ca, require_client_auth=bool(client_ca))


CERTIFICATE_WARNING_DAYS = 30


def report_certificate_expiry(chain: bytes, metrics: Metrics, now: datetime | None = None) -> None:
    """Publish when the server's certificate expires, and warn at start if that is past or near:
    gRPC serves an expired certificate without a word, and only its clients refuse it."""
    try:
        not_after = x509.load_pem_x509_certificate(chain).not_valid_after_utc  # the chain's first: the server's
    except ValueError:
        return  # not a certificate: binding the port refuses it, naming the setting
    metrics.tls_certificate_expiry.set(not_after.timestamp())
    left = not_after - (now or datetime.now(UTC))
    if left.total_seconds() <= 0:
        log.warning("GAN_TLS_CERT_FILE: the certificate expired on %s; clients will refuse it", not_after.date())
    elif left.days < CERTIFICATE_WARNING_DAYS:
        log.warning("GAN_TLS_CERT_FILE: the certificate expires on %s, in %d days", not_after.date(), left.days)


def _read_pem(path: Path, setting: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OSError(f"{setting} (GAN_{setting.upper()}): cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN" not in data:
        raise OSError(f"{setting} (GAN_{setting.upper()}): {path} is not a PEM file")
    return data


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
