"""Admission control: calls beyond the concurrency limit are refused at once, with the setting's name."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from tests.conftest import ServerThread, scrape


def test_calls_over_the_concurrency_limit_get_resource_exhausted(model_repository: Path) -> None:
    with ServerThread(model_repository=model_repository, max_concurrent_calls=2, max_count=256) as running:
        with grpc.insecure_channel(running.target) as channel:
            stub = pb_grpc.GeneratorServiceStub(channel)
            request = pb.GenerateRequest(model="digits", count=256, seed=1)
            calls = [stub.Generate.future(request, timeout=60) for _ in range(40)]
            codes = Counter(call.code() for call in calls)
            refused = next(c for c in calls if c.code() == grpc.StatusCode.RESOURCE_EXHAUSTED)
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        assert "GAN_MAX_CONCURRENT_CALLS" in refused.details()
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # probes are always admitted
        metrics = scrape(running)
        key = 'gan_request_failures_total{method="Generate",model="",reason="overloaded"}'
        assert metrics[key] == codes[grpc.StatusCode.RESOURCE_EXHAUSTED]
