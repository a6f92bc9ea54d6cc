"""The CUDA execution provider end to end, through the real server.

These run only where onnxruntime opens a session on a GPU; elsewhere (CI, these 2-core machines) they are
skipped. On a GPU machine, GAN_TEST_CUDA=1 turns a CUDA provider that does not load into a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from gan_client.client import decode_tensor
from inference import grpc_service_pb2_grpc as v2_grpc
from service.runtime import CUDA, load_runtime
from service.settings import load_settings
from tests.conftest import ServerThread, scrape
from tests.service.onnx_models import write_doubler, write_memory_hog
from tests.service.test_v2 import output, raw_request, status_of


@pytest.fixture(scope="module", autouse=True)
def cuda_only(tmp_path_factory: pytest.TempPathFactory) -> None:
    probe = load_runtime(write_doubler(tmp_path_factory.mktemp("probe") / "m.onnx"), load_settings(provider="auto"))
    if probe.provider == CUDA:
        return
    if os.environ.get("GAN_TEST_CUDA") == "1":
        pytest.fail(f"GAN_TEST_CUDA=1 but onnxruntime runs on {probe.provider}: {probe.fallback_reason}")
    pytest.skip(f"no usable CUDA provider here: {probe.fallback_reason}")


@pytest.fixture(scope="module")
def gpu_repository(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cuda-models")
    shutil.copytree(model_repository / "digits", root / "digits")
    write_doubler(root / "doubler" / "1" / "model.onnx")
    write_memory_hog(root / "hog" / "1" / "model.onnx")
    return root


@pytest.fixture(scope="module")
def gpu_server(gpu_repository: Path) -> Iterator[ServerThread]:
    # a 1 GiB arena: the memory hog's big run fails inside the limit instead of taking the whole card
    with ServerThread(model_repository=gpu_repository, provider="cuda", cuda_mem_limit_gib=1.0) as running:
        yield running


def samples_from(server: ServerThread, **fields: object) -> np.ndarray:
    stub = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(server.target))
    return decode_tensor(stub.Generate(pb.GenerateRequest(**fields), timeout=60))


def test_every_model_is_ready_on_cuda_and_the_metric_says_so(gpu_server: ServerThread) -> None:
    ready = {k: v for k, v in scrape(gpu_server).items() if k.startswith("gan_model_ready{")}
    assert len(ready) == 3 and all(v == 1 for v in ready.values()), ready
    assert all(f'provider="{CUDA}"' in key for key in ready), ready


def test_cuda_samples_match_the_cpu_ones_for_the_same_seed(gpu_server: ServerThread, gpu_repository: Path) -> None:
    request = {"model": "digits", "count": 100, "seed": 11, "labels": [3]}  # 100 > max_batch_size 64: two runs
    on_gpu = samples_from(gpu_server, **request)
    with ServerThread(model_repository=gpu_repository, provider="cpu") as cpu_server:
        on_cpu = samples_from(cpu_server, **request)
    assert on_gpu.shape == (100, 1, 16, 16)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-3)


def test_v2_infer_on_cuda_returns_the_computed_values(gpu_server: ServerThread) -> None:
    stub = v2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(gpu_server.target))
    for rows in (1, 7, 300):
        x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
        reply = stub.ModelInfer(raw_request("doubler", x=x), timeout=60)
        np.testing.assert_array_equal(output(reply, "y"), 2 * x)


def test_a_cuda_run_out_of_memory_is_resource_exhausted_and_the_card_keeps_serving(gpu_server: ServerThread) -> None:
    stub = v2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(gpu_server.target))
    error = status_of(stub.ModelInfer, raw_request("hog", x=np.array([[2**34]], dtype=np.int64)))  # 64 GiB of ones
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "ran out of memory (it asked for" in (error.details() or "") and "fewer samples" in (error.details() or "")
    reply = stub.ModelInfer(raw_request("hog", x=np.array([[3], [2]], dtype=np.int64)), timeout=60)
    np.testing.assert_array_equal(output(reply, "y"), [[9.0], [6.0]])
    after = samples_from(gpu_server, model="digits", count=64, seed=1)
    assert after.shape == (64, 1, 16, 16) and np.isfinite(after).all()
