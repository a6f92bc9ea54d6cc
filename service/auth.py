"""Bearer-token authentication, as a gRPC server interceptor.

With `auth_token_file` set, every call must carry `authorization: Bearer <token>` with a
token from that file (UNAUTHENTICATED otherwise). With `admin_token_file` set, loading and
unloading models (the V2 repository-control calls) needs a token from that file
(PERMISSION_DENIED for other valid tokens). Health checks stay open for probes. Tokens are
compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from service.metrics import Metrics

OPEN_SERVICES = ("/grpc.health.v1.Health/",)
ADMIN_METHODS = (
    "/inference.GRPCInferenceService/RepositoryModelLoad",
    "/inference.GRPCInferenceService/RepositoryModelUnload",
)
_SCHEME = "bearer "


def read_tokens(path: Path, setting: str) -> tuple[bytes, ...]:
    """One token per line; blank lines and lines starting with # are skipped. UTF-8, with or
    without the byte-order mark some editors write first (it would otherwise join the first token)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise OSError(f"{setting} (GAN_{setting.upper()}): cannot read {path}: {exc}") from None
    tokens = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not tokens:
        raise OSError(f"{setting} (GAN_{setting.upper()}): {path} holds no tokens; put one token per line")
    for token in tokens:
        _check_sendable(token, path, setting)
    return tuple(token.encode() for token in tokens)


def _check_sendable(token: str, path: Path, setting: str) -> None:
    """gRPC metadata carries printable ASCII only: a token with anything else could never match."""
    if not all(" " <= char <= "~" for char in token):
        raise OSError(
            f"{setting} (GAN_{setting.upper()}): {path} holds a token with a character other than printable "
            "ASCII, which no client can send in gRPC metadata; use letters, digits and punctuation"
        )


def _matches(given: bytes, tokens: tuple[bytes, ...]) -> bool:
    """Constant time in the token values: every token is compared, whatever matched before."""
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given, token)
    return found


@dataclass(frozen=True)
class Decision:
    code: grpc.StatusCode
    message: str


class TokenAuth(grpc.aio.ServerInterceptor):
    def __init__(self, users: tuple[bytes, ...], admins: tuple[bytes, ...], metrics: Metrics) -> None:
        self._users = users + admins  # an admin token is also a valid token
        self._users_required = bool(users)  # without a user token file, only repository control is guarded
        self._admins = admins
        self._metrics = metrics

    def decide(self, method: str, metadata: tuple[tuple[str, Any], ...]) -> Decision | None:
        """None lets the call through; otherwise the status it gets."""
        needs_admin = bool(self._admins) and method in ADMIN_METHODS
        if method.startswith(OPEN_SERVICES) or not (self._users_required or needs_admin):
            return None
        headers = [str(value) for key, value in metadata if key == "authorization"]
        if len(headers) > 1:  # which one counts would be a guess, and a proxy may have added one
            return Decision(
                grpc.StatusCode.UNAUTHENTICATED,
                f"authorization: send one 'authorization' header, not {len(headers)}",
            )
        header = headers[0] if headers else None
        if header is None or not header.lower().startswith(_SCHEME):
            return Decision(
                grpc.StatusCode.UNAUTHENTICATED,
                "authorization: this call needs metadata 'authorization: Bearer <token>'",
            )
        given = header[len(_SCHEME) :].strip().encode()
        if self._users_required and not _matches(given, self._users):
            return Decision(grpc.StatusCode.UNAUTHENTICATED, "authorization: the token is not valid")
        if needs_admin and not _matches(given, self._admins):
            return Decision(
                grpc.StatusCode.PERMISSION_DENIED,
                f"authorization: {method.rsplit('/', 1)[-1]} needs an admin token (GAN_ADMIN_TOKEN_FILE)",
            )
        return None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        decision = self.decide(details.method, tuple(details.invocation_metadata or ()))
        if decision is None or handler is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        self._metrics.count_request(method, "", decision.code.name, 0.0)
        return _refusal(handler, decision)


def _refusal(handler: grpc.RpcMethodHandler, decision: Decision) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that answers `decision` at once."""

    async def refuse(request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(decision.code, decision.message)

    deserialize, serialize = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse, deserialize, serialize)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse, deserialize, serialize)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, deserialize, serialize)
    return grpc.stream_stream_rpc_method_handler(refuse, deserialize, serialize)
