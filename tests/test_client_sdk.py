"""The client SDK on its own: gRPC retries with backoff against a server that fails on purpose."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from gan_client.channel import retry_service_config
from gan_client.client import AsyncGeneratorClient, GeneratorClient, chunk_seed
from service import sampling


class Flaky(pb_grpc.GeneratorServiceServicer):
    """Answers ListModels with `code` for the first `failures` attempts, then succeeds."""

    def __init__(self) -> None:
        self.code = grpc.StatusCode.UNAVAILABLE
        self.failures = 0
        self.attempts = 0
        self.lock = threading.Lock()
        self.seen_rows: list[tuple[int, float | None]] = []  # chunk_rows, seconds left, of each rows stream

    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext) -> pb.ListModelsResponse:
        self._attempt(context)
        return pb.ListModelsResponse(models=[pb.ModelInfo(name="m")])

    def Generate(self, request: pb.GenerateRequest, context: grpc.ServicerContext) -> pb.GenerateResponse:
        self._attempt(context)
        return pb.GenerateResponse(model="m", shape=[0, 1, 1, 1], output_format=pb.OUTPUT_FORMAT_FLOAT32)

    def GetModel(self, request: pb.GetModelRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        return pb.ModelInfo(name=request.name, max_count=200)

    def GenerateRowsStream(
        self, request: pb.GenerateRowsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.GenerateRowsResponse]:
        self.seen_rows.append((request.chunk_rows, context.time_remaining()))
        yield pb.GenerateRowsResponse(model=request.model, rows=0)

    def _attempt(self, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.attempts += 1
            failing = self.attempts <= self.failures
        if failing:
            context.abort(self.code, f"attempt {self.attempts} refused on purpose")


@pytest.fixture()
def flaky() -> Iterator[tuple[Flaky, str]]:
    servicer = Flaky()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    pb_grpc.add_GeneratorServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED]
)
def test_retryable_failures_are_retried_until_success(flaky: tuple[Flaky, str], code: grpc.StatusCode) -> None:
    servicer, target = flaky
    servicer.code, servicer.failures = code, 2
    with GeneratorClient(target, timeout=10, retries=4) as client:
        assert [m.name for m in client.list_models()] == ["m"]
    assert servicer.attempts == 3


def test_requests_larger_than_grpcs_default_retry_buffer_are_retried(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky
    servicer.failures = 2
    latents = np.zeros((800, 100), np.float32)  # 320 KB, over gRPC's default 256 KiB per-call retry buffer
    with GeneratorClient(target, timeout=10, retries=4) as client:
        assert client.generate("m", 0, latents=latents).array.shape == (0, 1, 1, 1)
    assert servicer.attempts == 3


def test_a_rows_stream_gets_the_timeout_for_each_chunk_of_max_count(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky
    with GeneratorClient(target, timeout=30) as client:
        list(client.rows("people", 450))

    async def stream() -> None:
        async with AsyncGeneratorClient(target, timeout=30) as client:
            async for _ in client.rows("people", 450, chunk_rows=100):
                pass

    asyncio.run(stream())
    (chunk, left), (async_chunk, async_left) = servicer.seen_rows
    assert chunk == 200 and left is not None and 60 < left < 91, "3 chunks of the model's max_count: 3 x 30 s"
    assert async_chunk == 100 and async_left is not None and 120 < async_left < 151, "5 chunks of 100: 5 x 30 s"


def test_chunk_seeds_are_the_servers_and_nearby_seeds_share_no_chunk() -> None:
    assert chunk_seed(7, 0) == 7, "a count that needs one call uses the seed itself"
    for seed in (0, 1, 2, 2**64 - 1):
        assert [chunk_seed(seed, k) for k in range(4)] == [sampling.chunk_seed(seed, k) for k in range(4)]
    assert not {chunk_seed(1, k) for k in range(1, 50)} & {chunk_seed(2, k) for k in range(50)}
    assert all(0 <= chunk_seed(2**64 - 1, k) < 2**64 for k in range(4))


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


def test_a_client_certificate_without_its_key_is_refused_by_name(tmp_path: Path) -> None:
    """gRPC itself would drop a lone certificate and fail later in the handshake, far from the cause."""
    from gan_client.channel import TLSConfig

    cert = tmp_path / "client.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    for lone in (TLSConfig(cert_file=cert), TLSConfig(key_file=cert)):
        with pytest.raises(ValueError, match="give both cert_file and key_file"):
            GeneratorClient("localhost:1", tls=lone)


def test_request_builders_carry_images_endpoints_and_truncation() -> None:
    from gan_client.client import Endpoint, generate_request, interpolate_request, source_image, translate_request

    assert source_image(b"\x89PNG").encoded == b"\x89PNG"
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    raw = source_image(pixels).raw
    assert list(raw.shape) == [3, 2, 2] and raw.pixel_type == pb.PIXEL_TYPE_UINT8 and raw.data == pixels.tobytes()
    floats = source_image(pixels.astype(np.float64)).raw
    assert floats.pixel_type == pb.PIXEL_TYPE_FLOAT32 and len(floats.data) == 12 * 4
    with pytest.raises(ValueError, match="uint8 or float32"):
        source_image(pixels.astype(np.int32))
    request = translate_request("sr", [b"png", pixels], "uint8", 2)
    assert request.output_format == pb.OUTPUT_FORMAT_UINT8 and len(request.images) == 2 and request.version == 2
    with pytest.raises(ValueError, match="output"):
        translate_request("sr", [b"png"], "jpeg", 0)
    walk = interpolate_request(
        "digits", Endpoint(seed=1), Endpoint(latent=np.zeros(4), label=3), 5, True, 0.5, "png", 0
    )
    assert walk.start.seed == 1 and not walk.start.HasField("label")
    assert list(walk.end.latent.values) == [0.0] * 4 and walk.end.label == 3
    assert walk.method == pb.INTERPOLATION_METHOD_SPHERICAL and walk.truncation == 0.5 and walk.steps == 5
    assert not generate_request("m", 1, 1, None, (), 0, pb.OUTPUT_FORMAT_FLOAT32).HasField("truncation")
    assert generate_request(
        "m", 1, 1, None, (), 0, pb.OUTPUT_FORMAT_FLOAT32, truncation=0.7
    ).truncation == pytest.approx(0.7)
