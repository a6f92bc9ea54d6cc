"""`python -m service.healthcheck`: exit 0 when the local gan-serve reports SERVING over gRPC health.

Used by the container HEALTHCHECK. It reads the same GAN_* settings as the server (port,
address, TLS); with TLS, GAN_HEALTHCHECK_CA_FILE names the CA to trust (default: the server's own
certificate file, which works for self-signed certificates) and GAN_HEALTHCHECK_SERVER_NAME the
name the server's certificate must hold (default: localhost; it connects to localhost, but a
production certificate names the service), and with mutual TLS (GAN_TLS_CLIENT_CA_FILE)
GAN_HEALTHCHECK_CERT_FILE and GAN_HEALTHCHECK_KEY_FILE name the client certificate it presents.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(
    target: str,
    timeout: float = 3.0,
    ca_file: Path | None = None,
    client_pair: tuple[Path, Path] | None = None,
    server_name: str = "localhost",
) -> str:
    """The health status name of `target` ("" service = the whole server); raises grpc.RpcError.
    `client_pair` (certificate, key) is presented to a server that requires client certificates;
    the server's certificate must name `server_name`."""
    if ca_file is None:
        channel = grpc.insecure_channel(target)
    else:
        cert, key = (client_pair[0].read_bytes(), client_pair[1].read_bytes()) if client_pair else (None, None)
        credentials = grpc.ssl_channel_credentials(ca_file.read_bytes(), private_key=key, certificate_chain=cert)
        channel = grpc.secure_channel(target, credentials, options=[("grpc.ssl_target_name_override", server_name)])
    with channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def local_address(host: str) -> str:
    """Where to reach a server bound to `host` (GAN_HOST) from its own machine: localhost when it binds
    every address, else that address (a server bound to one interface does not answer on localhost)."""
    if host in ("0.0.0.0", "::", "[::]", ""):
        return "localhost"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def main() -> int:
    port = os.environ.get("GAN_GRPC_PORT", "8001")
    ca = os.environ.get("GAN_HEALTHCHECK_CA_FILE") or os.environ.get("GAN_TLS_CERT_FILE")
    cert, key = os.environ.get("GAN_HEALTHCHECK_CERT_FILE"), os.environ.get("GAN_HEALTHCHECK_KEY_FILE")
    if bool(cert) != bool(key):
        print("gan-serve health: set both GAN_HEALTHCHECK_CERT_FILE and GAN_HEALTHCHECK_KEY_FILE, or neither",
              file=sys.stderr)  # fmt: skip
        return 1
    pair = (Path(cert), Path(key)) if cert and key else None
    server_name = os.environ.get("GAN_HEALTHCHECK_SERVER_NAME") or "localhost"
    target = local_address(os.environ.get("GAN_HOST") or "0.0.0.0")
    try:
        status = check(f"{target}:{port}", ca_file=Path(ca) if ca else None, client_pair=pair, server_name=server_name)
    except (grpc.RpcError, OSError) as exc:
        print(f"gan-serve health: unreachable on {target}:{port}: {exc}", file=sys.stderr)
        return 1
    print(f"gan-serve health: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
