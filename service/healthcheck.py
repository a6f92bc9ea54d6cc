"""`python -m service.healthcheck`: exit 0 when the local gan-serve reports SERVING over gRPC health.

Used by the container HEALTHCHECK. It reads the same GAN_* settings as the server (port,
TLS); with TLS, GAN_HEALTHCHECK_CA_FILE names the CA to trust (default: the server's own
certificate file, which works for self-signed certificates).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, timeout: float = 3.0, ca_file: Path | None = None) -> str:
    """The health status name of `target` ("" service = the whole server); raises grpc.RpcError."""
    if ca_file is None:
        channel = grpc.insecure_channel(target)
    else:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca_file.read_bytes())
        channel = grpc.secure_channel(target, credentials, options=[("grpc.ssl_target_name_override", "localhost")])
    with channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main() -> int:
    port = os.environ.get("GAN_GRPC_PORT", "8001")
    ca = os.environ.get("GAN_HEALTHCHECK_CA_FILE") or os.environ.get("GAN_TLS_CERT_FILE")
    try:
        status = check(f"localhost:{port}", ca_file=Path(ca) if ca else None)
    except (grpc.RpcError, OSError) as exc:
        print(f"gan-serve health: unreachable on port {port}: {exc}", file=sys.stderr)
        return 1
    print(f"gan-serve health: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
