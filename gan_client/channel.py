"""How the clients reach the service: TLS credentials, retries with backoff, message limits.

Retries are gRPC's own (a retry policy in the channel's service config), so they back off
with jitter, respect the call's deadline and never resend a call the server has started to
answer. They apply to UNAVAILABLE (server restarting, connection lost), RESOURCE_EXHAUSTED
(the server's queue is full) and CANCELLED from the server: its gRPC core cancels calls it
has received but not handed to the application when it shuts down (a call that races the
server's GOAWAY on SIGTERM) or has more than grpc.server.max_pending_requests waiting. A call
the client cancels itself is never retried. Every gan.v1 call is safe to repeat, as the same
seed gives the same samples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 4  # attempts after the first; gRPC allows at most 5 attempts in all
RETRYABLE_CODES = ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "CANCELLED")
SERVICES = ("gan.v1.GeneratorService",)
_SEND_LIMIT = 64 * 1024 * 1024  # the largest request; gRPC keeps it for retries (see channel_options)
_UNLIMITED = -1


@dataclass(frozen=True)
class TLSConfig:
    """Files for a TLS channel: the CA that signed the server, and a client pair for mutual TLS."""

    ca_file: Path | None = None  # None: the system's roots
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None  # override the name checked against the server certificate

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls: give both cert_file and key_file for mutual TLS, or neither")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file, "ca_file"),
            private_key=_read(self.key_file, "key_file"),
            certificate_chain=_read(self.cert_file, "cert_file"),
        )


def _read(path: Path | None, field: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"tls.{field}: cannot read {path}: {exc.strerror}") from None


def retry_service_config(retries: int) -> str:
    """The channel service config: retry RETRYABLE_CODES with exponential backoff."""
    if not 0 <= retries <= 4:
        raise ValueError(f"retries: must be between 0 and 4 (gRPC allows 5 attempts in all), got {retries}")
    method_config: dict[str, object] = {"name": [{"service": name} for name in SERVICES]}
    if retries:
        method_config["retryPolicy"] = {
            "maxAttempts": retries + 1,
            "initialBackoff": "0.1s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2.0,
            "retryableStatusCodes": list(RETRYABLE_CODES),
        }
    return json.dumps({"methodConfig": [method_config]})


def channel_options(retries: int, tls: TLSConfig | None) -> list[tuple[str, object]]:
    options: list[tuple[str, object]] = [
        # The server bounds its replies (GAN_MAX_REPLY_MIB, checked before it generates); a reply
        # the client asked for is never refused here.
        ("grpc.max_receive_message_length", _UNLIMITED),
        ("grpc.max_send_message_length", _SEND_LIMIT),
        # gRPC retries only calls whose request fits this buffer (256 KiB by default): large
        # images and explicit latents would otherwise never be retried.
        ("grpc.per_rpc_retry_buffer_size", _SEND_LIMIT),
        ("grpc.enable_retries", 1 if retries else 0),
        ("grpc.service_config", retry_service_config(retries)),
    ]
    if tls is not None and tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return options


def open_channel(target: str, retries: int, tls: TLSConfig | None) -> grpc.Channel:
    options = channel_options(retries, tls)
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, tls.credentials(), options=options)


def open_aio_channel(target: str, retries: int, tls: TLSConfig | None) -> grpc.aio.Channel:
    options = channel_options(retries, tls)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, tls.credentials(), options=options)
