"""The V2 API (inference.GRPCInferenceService) on the real server, through our own stubs.

tests/service/test_v2_wire_compat.py drives the same server with the stock tritonclient.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from gan_client.client import decode_tensor
from inference import grpc_service_pb2 as v2
from inference import grpc_service_pb2_grpc as v2_grpc
from service.interpolation import one_hot
from service.sampling import latents_from_seed
from tests.conftest import ServerThread, scrape
from tests.service.onnx_models import (
    write_doubler,
    write_int8_caster,
    write_label_generator,
    write_memory_hog,
    write_two_outputs,
)

LATENT_DIM = 8  # of the tiny test generators


@pytest.fixture(scope="module")
def v2_server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """digits and noise (our exports); plain ONNX: `doubler` (variable batch), `fixed` (no batch axis), `caster`
    (INT8 in), `hog` (its memory grows with its input's values) and `pair` (outputs y = 2x, z = x + 1); and
    `oldlabels` (a generator taking int64 labels, as exported before class weights)."""
    root = tmp_path_factory.mktemp("v2-models")
    for name in ("digits", "noise"):
        shutil.copytree(model_repository / name, root / name)
    (root / "digits" / "config.json").write_text(json.dumps({"max_queue_delay_ms": 20, "max_batch_size": 64}))
    write_doubler(root / "doubler" / "1" / "model.onnx")
    write_doubler(root / "fixed" / "1" / "model.onnx", batch=2)
    write_int8_caster(root / "caster" / "1" / "model.onnx")
    write_label_generator(root / "oldlabels" / "1" / "model.onnx")  # latent (N, 4), label (N,) of 3 classes
    (root / "caster" / "config.json").write_text(json.dumps({"max_batch_size": 512}))  # above max_count 256
    write_memory_hog(root / "hog" / "1" / "model.onnx")
    write_two_outputs(root / "pair" / "1" / "model.onnx")
    with ServerThread(model_repository=root, max_count=256) as running:
        yield running


@pytest.fixture(scope="module")
def infer_stub(v2_server: ServerThread) -> v2_grpc.GRPCInferenceServiceStub:
    return v2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(v2_server.target))


def raw_request(model: str, **tensors: np.ndarray) -> v2.ModelInferRequest:
    datatypes = {np.dtype("float32"): "FP32", np.dtype("int64"): "INT64", np.dtype("float64"): "FP64"}
    request = v2.ModelInferRequest(model_name=model)
    for name, array in tensors.items():
        request.inputs.add(name=name, datatype=datatypes[array.dtype], shape=array.shape)
        request.raw_input_contents.append(array.tobytes())
    return request


def output(reply: v2.ModelInferResponse, name: str) -> np.ndarray:
    for index, tensor in enumerate(reply.outputs):
        if tensor.name == name:
            if reply.raw_output_contents:
                return np.frombuffer(reply.raw_output_contents[index], dtype="<f4").reshape(tensor.shape)
            return np.asarray(tensor.contents.fp32_contents, dtype=np.float32).reshape(tensor.shape)
    raise KeyError(name)


def status_of(call: object, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)  # type: ignore[operator]
    return caught.value


def test_model_infer_raw_equals_generate_with_the_same_latents(
    infer_stub: v2_grpc.GRPCInferenceServiceStub, v2_server: ServerThread
) -> None:
    latents = latents_from_seed(5, 4, LATENT_DIM)
    labels = np.array([0, 1, 2, 3], dtype=np.int64)
    weights = one_hot(labels, 10)  # the digits export takes class weights: one-hot rows are the plain classes
    reply = infer_stub.ModelInfer(raw_request("digits", latent=latents, class_weights=weights), timeout=30)
    assert reply.model_name == "digits" and reply.model_version == "1"
    images = output(reply, "image")
    stub = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(v2_server.target))
    generated = stub.Generate(pb.GenerateRequest(model="digits", count=4, seed=5, labels=labels.tolist()), timeout=30)
    np.testing.assert_array_equal(images, decode_tensor(generated))


def test_typed_contents_in_give_typed_contents_out(infer_stub: v2_grpc.GRPCInferenceServiceStub) -> None:
    x = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    request = v2.ModelInferRequest(model_name="doubler", id="req-7")
    request.inputs.add(name="x", datatype="FP32", shape=[2, 3]).contents.fp32_contents.extend(x.ravel().tolist())
    reply = infer_stub.ModelInfer(request, timeout=30)
    assert not reply.raw_output_contents and reply.id == "req-7"
    np.testing.assert_array_equal(output(reply, "y"), x * 2)


def test_plain_onnx_files_are_served_through_v2_only(
    infer_stub: v2_grpc.GRPCInferenceServiceStub, v2_server: ServerThread
) -> None:
    metadata = infer_stub.ModelMetadata(v2.ModelMetadataRequest(name="doubler"), timeout=30)
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("x", "FP32", [-1, 3])]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("y", "FP32", [-1, 3])]
    caster = infer_stub.ModelMetadata(v2.ModelMetadataRequest(name="caster"), timeout=30)
    assert [(t.name, t.datatype) for t in caster.inputs] == [("x", "INT8")], "clients build inputs of this type"
    fixed = infer_stub.ModelInfer(raw_request("fixed", x=np.ones((2, 3), np.float32)), timeout=30)
    np.testing.assert_array_equal(output(fixed, "y"), np.full((2, 3), 2.0))
    stub = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(v2_server.target))
    listed = {m.name for m in stub.ListModels(pb.ListModelsRequest(), timeout=30).models}
    assert listed == {"digits", "noise", "oldlabels"}, "plain ONNX files are not listed"
    error = status_of(stub.Generate, pb.GenerateRequest(model="doubler", count=1, seed=1))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "V2 API" in (error.details() or "")


def test_metadata_config_and_readiness(infer_stub: v2_grpc.GRPCInferenceServiceStub) -> None:
    assert infer_stub.ServerLive(v2.ServerLiveRequest(), timeout=30).live
    assert infer_stub.ServerReady(v2.ServerReadyRequest(), timeout=30).ready
    assert infer_stub.ModelReady(v2.ModelReadyRequest(name="digits", version="1"), timeout=30).ready
    assert not infer_stub.ModelReady(v2.ModelReadyRequest(name="digits", version="9"), timeout=30).ready
    assert not infer_stub.ModelReady(v2.ModelReadyRequest(name="nothing"), timeout=30).ready
    server = infer_stub.ServerMetadata(v2.ServerMetadataRequest(), timeout=30)
    assert server.name == "gan-serving" and "model_repository" in server.extensions
    metadata = infer_stub.ModelMetadata(v2.ModelMetadataRequest(name="digits"), timeout=30)
    assert metadata.versions == ["1"] and metadata.platform == "onnxruntime_onnx"
    assert {t.name: list(t.shape) for t in metadata.inputs} == {
        "latent": [-1, LATENT_DIM],
        "class_weights": [-1, 10],
    }
    assert {t.name: list(t.shape) for t in metadata.outputs} == {"image": [-1, 1, 16, 16]}
    config = infer_stub.ModelConfig(v2.ModelConfigRequest(name="digits"), timeout=30).config
    assert config.max_batch_size == 64 and config.dynamic_batching.max_queue_delay_microseconds == 20_000
    assert {i.name: list(i.dims) for i in config.input} == {"latent": [LATENT_DIM], "class_weights": [10]}
    assert config.version_policy.latest.num_versions == 1
    assert config.instance_group[0].count == 1
    fixed = infer_stub.ModelConfig(v2.ModelConfigRequest(name="fixed"), timeout=30).config
    assert fixed.max_batch_size == 0 and list(fixed.input[0].dims) == [2, 3]
    caster = infer_stub.ModelConfig(v2.ModelConfigRequest(name="caster"), timeout=30).config
    assert caster.max_batch_size == 256, "never more than a request may hold (max_count)"


def test_health_reports_every_service(v2_server: ServerThread) -> None:
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(v2_server.target))
    for service in ("", "gan.v1.GeneratorService", "inference.GRPCInferenceService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


LATENT = np.zeros((2, LATENT_DIM), np.float32)
WEIGHTS = one_hot(np.zeros(2, np.int64), 10)


def _with_raw(request: v2.ModelInferRequest, index: int, data: bytes) -> v2.ModelInferRequest:
    request.raw_input_contents[index] = data
    return request


def _int32_as_fp32() -> v2.ModelInferRequest:
    """INT32 values to an FP32 input: the bytes have the right length, the values would be garbage."""
    request = v2.ModelInferRequest(model_name="doubler")
    request.inputs.add(name="x", datatype="INT32", shape=[1, 3])
    request.raw_input_contents.append(np.array([[1, 2, 3]], np.int32).tobytes())
    return request


def _raw_and_contents() -> v2.ModelInferRequest:
    request = raw_request("doubler", x=np.ones((1, 3), np.float32))
    request.inputs[0].contents.fp32_contents.extend([9.0, 9.0, 9.0])
    return request


def _typed_int8(values: list[int]) -> v2.ModelInferRequest:
    request = v2.ModelInferRequest(model_name="caster")
    request.inputs.add(name="x", datatype="INT8", shape=[1, 2]).contents.int_contents.extend(values)
    return request


def _typed_fp32(values: list[float], shape: list[int]) -> v2.ModelInferRequest:
    request = v2.ModelInferRequest(model_name="doubler")
    request.inputs.add(name="x", datatype="FP32", shape=shape).contents.fp32_contents.extend(values)
    return request


def _one_raw_buffer_for_two_inputs() -> v2.ModelInferRequest:
    request = raw_request("digits", latent=LATENT, class_weights=WEIGHTS)
    del request.raw_input_contents[1]
    return request


def _shared_memory() -> v2.ModelInferRequest:
    request = v2.ModelInferRequest(model_name="doubler")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 3]).parameters["shared_memory_region"].string_param = "r"
    return request


def _timeout(microseconds: int) -> v2.ModelInferRequest:
    request = raw_request("doubler", x=np.zeros((1, 3), np.float32))
    request.parameters["timeout"].int64_param = microseconds
    return request


def _nan_latent() -> np.ndarray:
    latent = LATENT.copy()
    latent[1, 3] = np.nan
    return latent


BAD_REQUESTS = {
    "unknown model": (raw_request("nothing", x=LATENT), grpc.StatusCode.NOT_FOUND, "nothing"),
    "empty model name": (raw_request("", x=LATENT), grpc.StatusCode.INVALID_ARGUMENT, "name"),
    "bad version": (
        v2.ModelInferRequest(model_name="digits", model_version="latest"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model_version",
    ),
    "unknown version": (
        v2.ModelInferRequest(model_name="digits", model_version="7"),
        grpc.StatusCode.NOT_FOUND,
        "version 7",
    ),
    "unknown input": (raw_request("digits", latent=LATENT, lable=WEIGHTS), grpc.StatusCode.INVALID_ARGUMENT, "lable"),
    "missing input": (raw_request("digits", latent=LATENT), grpc.StatusCode.INVALID_ARGUMENT, "class_weights"),
    "wrong datatype": (
        raw_request("digits", latent=LATENT.astype(np.float64), class_weights=WEIGHTS),
        grpc.StatusCode.INVALID_ARGUMENT,
        "latent",
    ),
    "wrong shape": (
        raw_request("digits", latent=np.zeros((2, 3), np.float32), class_weights=WEIGHTS),
        grpc.StatusCode.INVALID_ARGUMENT,
        "latent",
    ),
    "short raw buffer": (
        _with_raw(raw_request("digits", latent=LATENT, class_weights=WEIGHTS), 0, b"\0" * 12),
        grpc.StatusCode.INVALID_ARGUMENT,
        "raw_input_contents",
    ),
    "batch axes differ": (
        raw_request("digits", latent=LATENT, class_weights=np.zeros((3, 10), np.float32)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "batch",
    ),
    "non-finite latent": (
        raw_request("digits", latent=_nan_latent(), class_weights=WEIGHTS),
        grpc.StatusCode.INVALID_ARGUMENT,
        "not finite",
    ),
    "class weights of another width": (
        raw_request("digits", latent=LATENT, class_weights=np.zeros((2, 11), np.float32)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "class_weights",
    ),
    "too many samples": (
        raw_request("doubler", x=np.zeros((257, 3), np.float32)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "between 1 and 256",
    ),
    "datatype of the same width": (_int32_as_fp32(), grpc.StatusCode.INVALID_ARGUMENT, "inputs[0] ('x').datatype"),
    "raw and typed contents together": (_raw_and_contents(), grpc.StatusCode.INVALID_ARGUMENT, "contents"),
    "typed value out of INT8's range": (_typed_int8([300, 1]), grpc.StatusCode.INVALID_ARGUMENT, "300 does not fit"),
    "version with a leading zero": (
        v2.ModelInferRequest(model_name="doubler", model_version="01"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model_version",
    ),
    "a version of 4301 digits": (
        v2.ModelInferRequest(model_name="doubler", model_version="1" * 4301),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model_version",
    ),
    "shared memory": (_shared_memory(), grpc.StatusCode.INVALID_ARGUMENT, "parameters['shared_memory_region']"),
    "negative timeout parameter": (_timeout(-5), grpc.StatusCode.INVALID_ARGUMENT, "parameters['timeout']"),
    "a model name of 20,000 characters": (
        raw_request("n" * 20_000, x=np.zeros((1, 3), np.float32)),
        grpc.StatusCode.NOT_FOUND,
        "(cut: the request holds a very long value)",
    ),
    "non-ASCII digit version": (
        v2.ModelInferRequest(model_name="doubler", model_version="\u00b2"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model_version",
    ),
    "typed contents of the wrong length": (
        _typed_fp32([1.0, 2.0], [1, 3]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "inputs[0] ('x').contents.fp32_contents: 2 values; shape [1, 3] needs 3",
    ),
    "fewer raw buffers than inputs": (
        _one_raw_buffer_for_two_inputs(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "raw_input_contents: 1 buffers for 2 inputs",
    ),
    "label outside the classes": (
        raw_request("oldlabels", latent=np.zeros((2, 4), np.float32), label=np.array([0, 3], np.int64)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "label 3 is outside the model's classes 0..2",
    ),
    "fixed shape mismatch": (
        raw_request("fixed", x=np.zeros((3, 3), np.float32)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "shape[0]",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_infer_requests_get_a_status_naming_the_field(
    infer_stub: v2_grpc.GRPCInferenceServiceStub, case: str
) -> None:
    request, code, mentioned = BAD_REQUESTS[case]
    error = status_of(infer_stub.ModelInfer, request)
    assert error.code() == code, error.details()
    assert mentioned in (error.details() or ""), error.details()


def test_unknown_output_and_bad_priority_are_refused(infer_stub: v2_grpc.GRPCInferenceServiceStub) -> None:
    request = raw_request("doubler", x=np.zeros((1, 3), np.float32))
    request.outputs.add(name="z")
    error = status_of(infer_stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "outputs[0].name" in (error.details() or "")
    request = raw_request("doubler", x=np.zeros((1, 3), np.float32))
    request.parameters["priority"].int64_param = 7
    error = status_of(infer_stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "priority" in (error.details() or "")
    request.parameters["priority"].int64_param = 1
    assert infer_stub.ModelInfer(request, timeout=30).outputs[0].name == "y"


def test_the_timeout_parameter_is_a_deadline(infer_stub: v2_grpc.GRPCInferenceServiceStub) -> None:
    digits = raw_request(
        "digits", latent=np.zeros((256, LATENT_DIM), np.float32), class_weights=np.zeros((256, 10), np.float32)
    )
    infer_stub.ModelInfer(digits, timeout=30)  # measured: how long 256 samples take
    digits.parameters["timeout"].int64_param = 1  # microseconds, as Triton's clients send it
    error = status_of(infer_stub.ModelInfer, digits)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error.details()
    assert (error.details() or "").startswith("deadline:"), "alone in the queue, retrying cannot help"
    assert infer_stub.ModelInfer(_timeout(10_000_000), timeout=30).outputs[0].name == "y"


def test_metadata_calls_name_their_fields(infer_stub: v2_grpc.GRPCInferenceServiceStub) -> None:
    error = status_of(infer_stub.ModelMetadata, v2.ModelMetadataRequest(name="nothing"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and (error.details() or "").startswith("name: ")
    error = status_of(infer_stub.ModelReady, v2.ModelReadyRequest(name="digits", version="0"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and (error.details() or "").startswith("version: ")
    error = status_of(infer_stub.ModelStatistics, v2.ModelStatisticsRequest(version="1"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and (error.details() or "").startswith("version: ")


def test_typed_int8_contents_in_range_are_served(infer_stub: v2_grpc.GRPCInferenceServiceStub) -> None:
    reply = infer_stub.ModelInfer(_typed_int8([-128, 127]), timeout=30)
    assert output(reply, "y").tolist() == [[-128.0, 127.0]]


def test_duplicate_outputs_and_classification_are_refused(infer_stub: v2_grpc.GRPCInferenceServiceStub) -> None:
    request = raw_request("doubler", x=np.zeros((1, 3), np.float32))
    request.outputs.add(name="y")
    request.outputs.add(name="y")
    error = status_of(infer_stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "outputs[1].name" in (error.details() or "")
    request = raw_request("doubler", x=np.zeros((1, 3), np.float32))
    request.outputs.add(name="y").parameters["classification"].int64_param = 2
    error = status_of(infer_stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "outputs[0].parameters['classification']" in (error.details() or "")


def test_a_reply_over_the_limit_is_refused_naming_the_setting(tmp_path: Path) -> None:
    write_doubler(tmp_path / "doubler" / "1" / "model.onnx")
    limits = {"max_reply_mib": 1, "max_count": 200_000, "max_queue_size": 200_000}
    with ServerThread(model_repository=tmp_path, **limits) as running, grpc.insecure_channel(running.target) as channel:
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        x = np.ones((100_000, 3), np.float32)  # 1.2 MB in, 1.2 MB out
        error = status_of(stub.ModelInfer, raw_request("doubler", x=x))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "GAN_MAX_REPLY_MIB" in (error.details() or "")
        assert output(stub.ModelInfer(raw_request("doubler", x=x[:1000]), timeout=30), "y").shape == (1000, 3)


def test_repository_control_is_off_unless_explicit(infer_stub: v2_grpc.GRPCInferenceServiceStub) -> None:
    error = status_of(infer_stub.RepositoryModelUnload, v2.RepositoryModelUnloadRequest(model_name="digits"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "explicit" in (error.details() or "")
    index = infer_stub.RepositoryIndex(v2.RepositoryIndexRequest(), timeout=30)
    assert {(m.name, m.version, m.state) for m in index.models} == {
        ("digits", "1", "READY"),
        ("noise", "1", "READY"),
        ("doubler", "1", "READY"),
        ("fixed", "1", "READY"),
        ("caster", "1", "READY"),
        ("hog", "1", "READY"),
        ("oldlabels", "1", "READY"),
        ("pair", "1", "READY"),
    }


def test_both_apis_share_the_batcher_and_the_numbers_add_up(
    infer_stub: v2_grpc.GRPCInferenceServiceStub, v2_server: ServerThread
) -> None:
    stub = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(v2_server.target))
    before = scrape(v2_server)
    stats_before = infer_stub.ModelStatistics(v2.ModelStatisticsRequest(name="digits"), timeout=30).model_stats[0]

    def via_generate(seed: int) -> grpc.Future:
        return stub.Generate.future(pb.GenerateRequest(model="digits", count=2, seed=seed), timeout=30)

    def via_infer(seed: int) -> grpc.Future:
        latent = latents_from_seed(seed, 1, LATENT_DIM)
        request = raw_request("digits", latent=latent, class_weights=one_hot(np.array([3]), 10))
        return infer_stub.ModelInfer.future(request, timeout=30)

    # a large request keeps the model busy (4 runs of 64) while the 48 calls arrive, so they wait together
    # even on a loaded machine where they would otherwise trickle in one by one
    busy = stub.Generate.future(pb.GenerateRequest(model="digits", count=256, seed=0), timeout=30)
    calls = [via_generate(i) if i % 2 else via_infer(i) for i in range(48)]  # all in flight together
    for call in [busy, *calls]:
        call.result()
    after = scrape(v2_server)

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta('gan_requests_total{code="OK",method="Generate",model="digits"}') == 24 + 1
    assert delta('gan_requests_total{code="OK",method="ModelInfer",model="digits"}') == 24
    samples = 256 + 24 * 2 + 24
    assert delta('gan_samples_generated_total{model="digits"}') == samples
    assert delta('gan_batch_size_samples_sum{model="digits"}') == samples
    runs = delta('gan_batch_size_samples_count{model="digits"}')
    assert runs < 4 + 48, "concurrent requests of both APIs should share session runs"  # as in test_generate.py
    assert delta('gan_compute_duration_seconds_count{model="digits",phase="infer"}') == runs
    stats = infer_stub.ModelStatistics(v2.ModelStatisticsRequest(name="digits"), timeout=30).model_stats[0]
    assert stats.inference_count - stats_before.inference_count == samples
    assert stats.execution_count - stats_before.execution_count == runs
    assert stats.inference_stats.success.count - stats_before.inference_stats.success.count == 48 + 1


def test_server_calls_are_counted_like_every_other_call(
    infer_stub: v2_grpc.GRPCInferenceServiceStub, v2_server: ServerThread
) -> None:
    # Their refusals (a bad token, the drain, the concurrency limit) are counted: their answers must be too.
    before = scrape(v2_server)
    infer_stub.ServerLive(v2.ServerLiveRequest(), timeout=10)
    infer_stub.ServerReady(v2.ServerReadyRequest(), timeout=10)
    infer_stub.ServerMetadata(v2.ServerMetadataRequest(), timeout=10)
    after = scrape(v2_server)
    for method in ("ServerLive", "ServerReady", "ServerMetadata"):
        key = f'gan_requests_total{{code="OK",method="{method}",model=""}}'
        assert after.get(key, 0) - before.get(key, 0) == 1, method


def test_failures_are_counted_by_reason(infer_stub: v2_grpc.GRPCInferenceServiceStub, v2_server: ServerThread) -> None:
    before = scrape(v2_server)
    for _ in range(3):
        status_of(infer_stub.ModelInfer, raw_request("digits", latent=LATENT))
    status_of(infer_stub.ModelInfer, raw_request("nothing", x=LATENT))
    after = scrape(v2_server)
    key = 'gan_request_failures_total{method="ModelInfer",model="digits",reason="invalid_argument"}'
    assert after.get(key, 0) - before.get(key, 0) == 3
    key = 'gan_request_failures_total{method="ModelInfer",model="unknown",reason="not_found"}'
    assert after.get(key, 0) - before.get(key, 0) == 1


def test_a_run_that_runs_out_of_memory_is_resource_exhausted_and_the_model_keeps_serving(
    infer_stub: v2_grpc.GRPCInferenceServiceStub, v2_server: ServerThread
) -> None:
    before = scrape(v2_server)
    error = status_of(infer_stub.ModelInfer, raw_request("hog", x=np.array([[2**42]], dtype=np.int64)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ran out of memory" in (error.details() or "") and "fewer samples" in (error.details() or "")
    assert "onnxruntime_src" not in (error.details() or ""), "no runtime internals in the message"
    reply = infer_stub.ModelInfer(raw_request("hog", x=np.array([[3], [2]], dtype=np.int64)), timeout=30)
    np.testing.assert_array_equal(output(reply, "y"), [[9.0], [6.0]])
    key = 'gan_request_failures_total{method="ModelInfer",model="hog",reason="overloaded"}'
    assert scrape(v2_server).get(key, 0) - before.get(key, 0) == 1


def test_only_the_requested_outputs_are_returned(infer_stub: v2_grpc.GRPCInferenceServiceStub) -> None:
    x = np.array([[1, 2, 3]], dtype=np.float32)
    both = infer_stub.ModelInfer(raw_request("pair", x=x), timeout=30)
    assert [t.name for t in both.outputs] == ["y", "z"] and len(both.raw_output_contents) == 2
    request = raw_request("pair", x=x)
    request.outputs.add(name="z")
    chosen = infer_stub.ModelInfer(request, timeout=30)
    assert [t.name for t in chosen.outputs] == ["z"] and len(chosen.raw_output_contents) == 1
    np.testing.assert_array_equal(output(chosen, "z"), x + 1)
