"""GuardedServices: how services reach the gRPC server (generic handlers behind the call guard)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from gan.v1 import generator_pb2_grpc as pb_grpc
from inference import grpc_service_pb2_grpc as v2_grpc
from service.call_guard import CallGuard, GuardedServices
from service.metrics import Metrics


class RecordingServer:
    def __init__(self) -> None:
        self.generic: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self.generic.extend(handlers)


class Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata: tuple[Any, ...] = ()


def test_a_generated_service_arrives_as_one_generic_handler_of_guarded_methods() -> None:
    server = RecordingServer()
    services = GuardedServices(server, CallGuard(Metrics(CollectorRegistry()), 10))
    v2_grpc.add_GRPCInferenceServiceServicer_to_server(v2_grpc.GRPCInferenceServiceServicer(), services)
    services.check_complete()
    assert len(server.generic) == 1
    handler = server.generic[0].service(Details("/inference.GRPCInferenceService/ModelInfer"))
    assert handler is not None and handler.unary_unary is not None
    assert handler.unary_unary.__name__ == "guarded"  # behind the call guard
    assert server.generic[0].service(Details("/inference.GRPCInferenceService/NoSuchMethod")) is None


def test_a_streamed_reply_is_behind_the_guard_too() -> None:
    server = RecordingServer()
    services = GuardedServices(server, CallGuard(Metrics(CollectorRegistry()), 10))

    class Streaming(pb_grpc.GeneratorServiceServicer):
        async def GenerateRowsStream(self, request: Any, context: Any) -> None:  # writes with context.write
            return None

    pb_grpc.add_GeneratorServiceServicer_to_server(Streaming(), services)
    services.check_complete()
    handler = server.generic[0].service(Details("/gan.v1.GeneratorService/GenerateRowsStream"))
    assert handler is not None and handler.unary_stream is not None
    assert handler.unary_stream.__name__ == "guarded"


def test_stubs_that_add_only_a_generic_handler_are_refused_with_what_to_do() -> None:
    services = GuardedServices(RecordingServer(), CallGuard(Metrics(CollectorRegistry()), 10))
    services.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("old.Service", {}),))
    with pytest.raises(RuntimeError, match=r"grpcio-tools >= 1\.62"):
        services.check_complete()


def test_a_stream_yielded_by_an_async_generator_is_counted_in_flight_while_it_runs() -> None:
    guard = CallGuard(Metrics(CollectorRegistry()), 10)
    seen: list[int] = []

    async def replies(request: Any, context: Any) -> Any:
        for index in range(3):
            seen.append(guard.in_flight)
            yield index

    class Context:
        def time_remaining(self) -> float | None:
            return None

    handler = grpc.unary_stream_rpc_method_handler(replies, lambda data: data, lambda reply: reply)
    wrapped = guard.wrap("/gan.v1.GeneratorService/Stream", handler)

    async def drain() -> list[Any]:
        return [reply async for reply in wrapped.unary_stream(b"request", Context())]

    assert asyncio.run(drain()) == [0, 1, 2]
    assert seen == [1, 1, 1] and guard.in_flight == 0


class Aborted(Exception):
    pass


class FakeContext:
    """What the guard reads of a call's context: its time left; abort raises, as grpc's does."""

    def __init__(self, time_remaining: float | None) -> None:
        self._remaining = time_remaining
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def time_remaining(self) -> float | None:
        return self._remaining

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise Aborted


def call_through_guard(
    guard: CallGuard, context: FakeContext, method: str = "/gan.v1.GeneratorService/Generate"
) -> str:
    """Run a unary handler behind `guard`; 'handled' if it ran, else the refusal's code name."""

    async def handle(request: Any, context: Any) -> str:
        return "handled"

    wrapped = guard.wrap(method, grpc.unary_unary_rpc_method_handler(handle, lambda data: data, lambda r: r))
    try:
        return str(asyncio.run(wrapped.unary_unary(b"request", context)))
    except Aborted:
        assert context.aborted is not None
        return context.aborted[0].name


def test_a_call_whose_deadline_passed_before_it_started_is_refused_without_running() -> None:
    guard = CallGuard(Metrics(CollectorRegistry()), 10)
    context = FakeContext(time_remaining=-0.001)
    assert call_through_guard(guard, context) == "DEADLINE_EXCEEDED"
    assert context.aborted is not None and "deadline" in context.aborted[1]
    assert call_through_guard(guard, FakeContext(time_remaining=0.5)) == "handled"
    assert call_through_guard(guard, FakeContext(time_remaining=None)) == "handled"  # no deadline at all


def test_while_draining_new_calls_are_unavailable_but_health_checks_run() -> None:
    guard = CallGuard(Metrics(CollectorRegistry()), 10)
    guard.refuse_new_calls()
    assert call_through_guard(guard, FakeContext(None)) == "UNAVAILABLE"
    assert call_through_guard(guard, FakeContext(None), "/grpc.health.v1.Health/Check") == "handled"


def test_the_drain_waits_for_running_calls_then_returns() -> None:
    guard = CallGuard(Metrics(CollectorRegistry()), 10)

    async def drain() -> float:
        loop = asyncio.get_running_loop()
        guard.in_flight = 1
        loop.call_later(0.2, lambda: setattr(guard, "in_flight", 0))  # the last call finishes
        start = loop.time()
        await guard.wait_for_running_calls(at_least_s=0.0, deadline=start + 5)
        return loop.time() - start

    assert 0.2 <= asyncio.run(drain()) < 2


def test_the_drain_lasts_at_least_its_refusal_period_and_at_most_until_its_deadline() -> None:
    guard = CallGuard(Metrics(CollectorRegistry()), 10)

    async def drain(in_flight: int, at_least_s: float, within_s: float) -> float:
        loop = asyncio.get_running_loop()
        guard.in_flight = in_flight
        start = loop.time()
        await guard.wait_for_running_calls(at_least_s, deadline=start + within_s)
        return loop.time() - start

    assert 0.3 <= asyncio.run(drain(0, at_least_s=0.3, within_s=5)) < 2  # idle, still refuses for 0.3 s
    assert 0.3 <= asyncio.run(drain(1, at_least_s=0.0, within_s=0.3)) < 2  # a call that never ends: the deadline
