"""The client SDK on its own: gRPC retries with backoff against a server that fails on purpose."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from gan_client.channel import retry_service_config
from gan_client.client import GeneratorClient


class Flaky(pb_grpc.GeneratorServiceServicer):
    """Answers ListModels with `code` for the first `failures` attempts, then succeeds."""

    def __init__(self) -> None:
        self.code = grpc.StatusCode.UNAVAILABLE
        self.failures = 0
        self.attempts = 0
        self.lock = threading.Lock()

    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext) -> pb.ListModelsResponse:
        with self.lock:
            self.attempts += 1
            failing = self.attempts <= self.failures
        if failing:
            context.abort(self.code, f"attempt {self.attempts} refused on purpose")
        return pb.ListModelsResponse(models=[pb.ModelInfo(name="m")])


@pytest.fixture()
def flaky() -> Iterator[tuple[Flaky, str]]:
    servicer = Flaky()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    pb_grpc.add_GeneratorServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_retryable_failures_are_retried_until_success(flaky: tuple[Flaky, str], code: grpc.StatusCode) -> None:
    servicer, target = flaky
    servicer.code, servicer.failures = code, 2
    with GeneratorClient(target, timeout=10, retries=4) as client:
        assert [m.name for m in client.list_models()] == ["m"]
    assert servicer.attempts == 3


def test_retries_stop_at_the_limit_with_the_servers_message(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky
    servicer.failures = 10
    with GeneratorClient(target, timeout=10, retries=2) as client, pytest.raises(grpc.RpcError) as caught:
        client.list_models()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "refused on purpose" in caught.value.details()
    assert servicer.attempts == 3


def test_other_errors_and_zero_retries_fail_at_once(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky
    servicer.code, servicer.failures = grpc.StatusCode.INVALID_ARGUMENT, 10
    with GeneratorClient(target, timeout=10) as client, pytest.raises(grpc.RpcError):
        client.list_models()
    assert servicer.attempts == 1
    servicer.code = grpc.StatusCode.UNAVAILABLE
    with GeneratorClient(target, timeout=10, retries=0) as client, pytest.raises(grpc.RpcError):
        client.list_models()
    assert servicer.attempts == 2


def test_options_that_cannot_work_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="retries"):
        retry_service_config(5)
    with pytest.raises(ValueError, match="timeout"):
        GeneratorClient("localhost:1", timeout=0)
