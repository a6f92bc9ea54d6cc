"""Typed service errors and their one mapping to gRPC status codes.

Every layer below the servicer raises these; the servicer turns them into a status
with `status_for`. Messages name the field and say what is allowed, because they
reach the client verbatim.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc


class ServiceError(Exception):
    """Base class: an error whose message is safe and useful to send to the client."""


class InvalidInput(ServiceError):
    """The request is malformed: a field is missing, out of range or of the wrong size."""


class ModelNotFound(ServiceError):
    """No loaded model (or version) has the requested name."""


class Overloaded(ServiceError):
    """The model's queue is full; the client should back off and retry."""


class ModelUnavailable(ServiceError):
    """The model exists but has no ready version (its load failed); the message says why."""


class ModelUnsupported(ServiceError):
    """The call needs something the model does not offer (e.g. gan.v1 on a plain ONNX file)."""


class RepositoryControlDisabled(ServiceError):
    """Load/Unload were called but the server does not run in explicit model control mode."""


class DeadlineExceeded(ServiceError):
    """The request's deadline passed before it could run."""


class Unavailable(ServiceError):
    """The service is shutting down and accepts no new work."""


class InferenceFailed(ServiceError):
    """The model runtime raised while running a batch."""


class OutOfMemory(ServiceError):
    """A run could not allocate its memory: fewer samples (or smaller inputs) per request, or a retry, may fit."""


class ModelLoadError(ServiceError):
    """A model file in the repository cannot be served (missing, corrupt, wrong signature)."""


_STATUS: dict[type[ServiceError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    InferenceFailed: grpc.StatusCode.INTERNAL,
    OutOfMemory: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ModelLoadError: grpc.StatusCode.FAILED_PRECONDITION,
    ModelUnavailable: grpc.StatusCode.UNAVAILABLE,
    ModelUnsupported: grpc.StatusCode.FAILED_PRECONDITION,
    RepositoryControlDisabled: grpc.StatusCode.FAILED_PRECONDITION,
}


def status_for(error: ServiceError) -> grpc.StatusCode:
    """The gRPC status code a client receives for `error`."""
    for cls in type(error).__mro__:
        if issubclass(cls, ServiceError) and cls in _STATUS:
            return _STATUS[cls]
    return grpc.StatusCode.INTERNAL


@contextlib.contextmanager
def naming(field: str) -> Iterator[None]:
    """A model lookup's NOT_FOUND or UNAVAILABLE, its message starting with the request's field."""
    try:
        yield
    except (ModelNotFound, ModelUnavailable) as exc:
        raise type(exc)(f"{field}: {exc}") from None
