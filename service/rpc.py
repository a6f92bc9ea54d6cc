"""What every RPC handler shares: counting, timing, deadlines and turning errors into statuses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from service.batcher import Priority
from service.errors import InvalidInput, ServiceError, status_for
from service.metrics import Metrics
from service.repository import Repository

Reply = TypeVar("Reply")


async def observe(
    metrics: Metrics,
    repository: Repository,
    method: str,
    model: str,
    context: grpc.aio.ServicerContext,
    handle: Callable[[], Awaitable[Reply]],
) -> Reply:
    """Run `handle`, count and time it, and turn a ServiceError into its status and message."""
    label = model if repository.has(model) else ("" if not model else "unknown")
    started = time.perf_counter()
    counted = False  # calls in flight are counted by service.call_guard, around this

    def count(code: grpc.StatusCode) -> None:
        nonlocal counted
        if not counted:
            counted = True
            metrics.count_request(method, label, code.name, time.perf_counter() - started)

    try:
        reply = await handle()
        count(grpc.StatusCode.OK)
        return reply
    except ServiceError as exc:
        code = status_for(exc)
        count(code)  # before abort: the client may see the status before abort returns
        await context.abort(code, bounded(str(exc)))
        raise  # unreachable: abort raises
    except asyncio.CancelledError:
        count(cancellation_code(context))
        raise
    finally:
        count(grpc.StatusCode.INTERNAL)  # anything else escaped: grpc answers it as an error


# The client cancels at its own deadline, which the server's copy (received time + grpc-timeout)
# trails by the request's transit time: a cancel that close to the deadline is the deadline's.
DEADLINE_SLACK_S = 0.05


def cancellation_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """What the client of a cancelled handler sees: grpc cancels it both when the call's deadline
    passes (DEADLINE_EXCEEDED: often a server too slow, which alerts count) and when the client
    cancels (CANCELLED: the client's doing)."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= DEADLINE_SLACK_S:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


MAX_MESSAGE_CHARS = 1000  # gRPC refuses status messages over ~16 KiB, and a client's long value echoed back


def bounded(message: str) -> str:
    """`message`, cut to MAX_MESSAGE_CHARS: it names the field first, then may quote a very long value."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}... (cut: the request holds a very long value)"


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The call's deadline on time.monotonic's scale, or None when the client set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def priority_from(value: int, field: str) -> Priority | None:
    """0 means the model's default; 1 (high) and 2 (normal) are the levels."""
    if value == 0:
        return None
    if value not in (Priority.HIGH, Priority.NORMAL):
        raise InvalidInput(f"{field}: {value} is not a priority level; use 1 (high), 2 (normal) or 0 (default)")
    return Priority(value)
