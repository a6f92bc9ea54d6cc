"""Requests whose bytes are not a valid message get INVALID_ARGUMENT, not UNKNOWN.

grpc decodes a request before our handlers see it, and answers a decoding failure (bad
UTF-8 in a string field, a truncated field) with UNKNOWN and the exception's text. This
interceptor gives every unary handler a deserializer that cannot raise: what fails to
decode reaches a small handler that answers INVALID_ARGUMENT, naming the message type.
Wrapped handlers are cached per method, so the hot path costs one dict lookup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from service.metrics import Metrics


class _Undecodable:
    def __init__(self, reason: str) -> None:
        self.reason = reason


class SafeDecoding(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._handlers: dict[str, grpc.RpcMethodHandler | None] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method
        if method not in self._handlers:
            handler = await continuation(details)
            self._handlers[method] = self._guard(method, handler) if handler is not None else None
        return self._handlers[method]

    def _guard(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        behavior, deserialize = handler.unary_unary, handler.request_deserializer
        if behavior is None or deserialize is None:
            return handler  # streaming calls (health watch, reflection) keep grpc's own handling
        short_name = method.rsplit("/", 1)[-1]

        def decode(data: bytes) -> Any:
            try:
                return deserialize(data)
            except DecodeError as exc:
                return _Undecodable(str(exc))

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Undecodable):
                self._metrics.count_request(short_name, "", grpc.StatusCode.INVALID_ARGUMENT.name, 0.0)
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"request: the bytes are not a valid {short_name} request message ({request.reason}); "
                    "send a message built from the .proto",
                )
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(guarded, decode, handler.response_serializer)
