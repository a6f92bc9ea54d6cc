"""Fuzzing both APIs with malformed requests: never INTERNAL, never a crash, always a named field.

Hypothesis generates 5,000 gan.v1 Generate requests, 5,000 V2 ModelInfer requests and 1,000
Translate requests (random bytes, truncated PNGs, headers claiming huge sizes, raw images of
wrong shapes and lengths) around
the real models: wrong dtypes and shapes, raw byte lengths that do not match, empty and
oversized payloads, NaN and Inf values, huge or negative counts, labels and shape entries,
unknown models and versions, names with '..', '/', NUL and non-ASCII. Then bytes that are
not a valid message at all. The examples are derandomized so CI is reproducible.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from inference import grpc_service_pb2 as v2
from inference import grpc_service_pb2_grpc as v2_grpc
from tests.conftest import ServerThread

EXAMPLES = 5000
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}
NAMES = ["digits", "noise", "", "nope", "../digits", "digits/..", "/etc/passwd", "dig\x00its", "dígits", "a" * 300]
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)
INTS = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, -1, 7, 8, 9, 10, 2**31 - 1]))


@pytest.fixture(scope="module")
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as opened:
        yield opened


def rejected_clearly(call: Callable[[], Any], fields: tuple[str, ...]) -> None:
    """The call succeeds, or fails with a precise status whose message names one of `fields`."""
    try:
        call()
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
        assert code not in NEVER, f"{code.name}: {details}"
        assert any(field in details for field in fields), f"{code.name}: {details!r} names none of {fields}"


# --- gan.v1 Generate ----------------------------------------------------------------------------

GENERATE_FIELDS = ("model", "version", "count", "latents", "labels", "output_format", "priority", "seed")


@st.composite
def generate_requests(draw: st.DrawFn) -> pb.GenerateRequest:
    request = pb.GenerateRequest(
        model=draw(st.one_of(st.sampled_from(NAMES), st.text(max_size=20))),
        version=draw(st.sampled_from([0, 0, 1, 2, -1, -(2**62), 2**62])),
        count=draw(st.one_of(st.integers(0, 300), st.sampled_from([2**31, 2**32 - 1]))),
        labels=draw(st.lists(INTS, max_size=6)),
        output_format=draw(st.sampled_from([0, 1, 2, 3, 4, 99])),
        priority=draw(st.sampled_from([0, 1, 2, 3, 2**32 - 1])),
    )
    source = draw(st.sampled_from(["seed", "latents", "none"]))
    if source == "seed":
        request.seed = draw(st.integers(0, 2**64 - 1))
    elif source == "latents":
        size = draw(st.sampled_from([0, 1, 7, 8, 16, 24, 9]))
        request.latents.values.extend(draw(st.lists(FLOATS, min_size=size, max_size=size)))
    return request


def test_fuzzed_generate_requests_get_precise_statuses(channel: grpc.Channel) -> None:
    stub = pb_grpc.GeneratorServiceStub(channel)

    @FUZZ
    @given(generate_requests())
    def check(request: pb.GenerateRequest) -> None:
        rejected_clearly(lambda: stub.Generate(request, timeout=30), GENERATE_FIELDS)

    check()


# --- V2 ModelInfer -------------------------------------------------------------------------------

INFER_FIELDS = ("model_name", "model_version", "inputs", "outputs", "raw_input_contents", "parameters", "model")
DATATYPES = ["FP32", "INT64", "INT32", "FP16", "FP64", "UINT8", "BOOL", "BYTES", "fp32", "", "NOPE"]
DIMS = st.one_of(st.integers(-3, 9), st.sampled_from([16, 64, 65, 1024, 2**31, 2**40, -(2**40)]))


@st.composite
def infer_requests(draw: st.DrawFn) -> v2.ModelInferRequest:
    request = v2.ModelInferRequest(
        model_name=draw(st.one_of(st.sampled_from(NAMES), st.text(max_size=20))),
        model_version=draw(st.sampled_from(["", "", "1", "0", "-1", "99", "1.5", "x", "../1"])),
        id=draw(st.text(max_size=8)),
    )
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        tensor = request.inputs.add(
            name=draw(st.sampled_from(["latent", "label", "latent", "x", ""])),
            datatype=draw(st.sampled_from(DATATYPES)),
            shape=draw(st.lists(DIMS, max_size=4)),
        )
        count = draw(st.integers(0, 24))
        if raw:
            fit = draw(st.booleans())
            size = count * 4 if fit else draw(st.integers(0, 300))
            values = draw(st.lists(FLOATS, min_size=size // 4, max_size=size // 4))
            payload = struct.pack(f"<{len(values)}f", *values) + b"\x00" * (size % 4)
            request.raw_input_contents.append(payload)
        elif draw(st.booleans()):
            tensor.contents.fp32_contents.extend(draw(st.lists(FLOATS, min_size=count, max_size=count)))
        else:
            tensor.contents.int64_contents.extend(draw(st.lists(INTS, min_size=count, max_size=count)))
    if raw and draw(st.booleans()):
        request.raw_input_contents.append(os.urandom(draw(st.integers(0, 64))))
    for _ in range(draw(st.integers(0, 2))):
        request.outputs.add(name=draw(st.sampled_from(["image", "nope", ""])))
    if draw(st.booleans()):
        parameter = request.parameters["priority"]
        kind = draw(st.sampled_from(["int", "string", "bool"]))
        if kind == "int":
            parameter.int64_param = draw(st.integers(-(2**63), 2**63 - 1))
        elif kind == "string":
            parameter.string_param = draw(st.text(max_size=5))
        else:
            parameter.bool_param = True
    return request


def test_fuzzed_infer_requests_get_precise_statuses(channel: grpc.Channel) -> None:
    stub = v2_grpc.GRPCInferenceServiceStub(channel)

    @FUZZ
    @given(infer_requests())
    def check(request: v2.ModelInferRequest) -> None:
        rejected_clearly(lambda: stub.ModelInfer(request, timeout=30), INFER_FIELDS)

    check()


# --- gan.v1 Translate -----------------------------------------------------------------------------

TRANSLATE_FIELDS = ("model", "version", "images", "output_format", "priority")
TRANSLATE_EXAMPLES = 1000


@pytest.fixture(scope="module")
def translate_channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    from tests.service.onnx_models import write_translator

    root = tmp_path_factory.mktemp("fuzz-translators")
    write_translator(root / "sr/1/model.onnx", "rgb", scale=2, size_multiple=4)
    write_translator(root / "inpaint/1/model.onnx", "rgb+mask", scale=1, size_multiple=1)
    limits = {"translate_max_pixels": 64 * 64, "translate_max_image_bytes": 50_000}
    with ServerThread(model_repository=root, **limits) as server, grpc.insecure_channel(server.target) as opened:
        yield opened


def _png_bytes(height: int, width: int, mode: str) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (width, height), color=0).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming any size, with no pixels behind it (a would-be bomb)."""
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@st.composite
def encoded_images(draw: st.DrawFn) -> pb.SourceImage:
    kind = draw(st.sampled_from(["random", "truncated", "whole", "header"]))
    if kind == "random":
        return pb.SourceImage(encoded=draw(st.binary(max_size=64)))
    if kind == "header":
        return pb.SourceImage(encoded=_png_header(draw(st.integers(0, 2**31)), draw(st.integers(0, 2**31))))
    side = draw(st.integers(1, 40))
    whole = _png_bytes(side, draw(st.integers(1, 40)), draw(st.sampled_from(["L", "RGB", "RGBA", "1", "P"])))
    if kind == "truncated":
        return pb.SourceImage(encoded=whole[: draw(st.integers(0, len(whole) - 1))])
    return pb.SourceImage(encoded=whole)


@st.composite
def raw_images(draw: st.DrawFn) -> pb.SourceImage:
    shape = draw(st.lists(st.sampled_from([-1, 0, 1, 3, 4, 5, 8, 9, 2**31 - 1]), max_size=4))
    pixel_type = draw(st.sampled_from([0, 1, 2, 7]))
    size = draw(st.sampled_from([0, 1, 192, 256, 768, 1024]))
    data = draw(st.binary(min_size=size, max_size=size))
    return pb.SourceImage(raw=pb.RawImage(shape=shape, pixel_type=pixel_type, data=data))


@st.composite
def translate_requests(draw: st.DrawFn) -> pb.TranslateRequest:
    return pb.TranslateRequest(
        model=draw(st.sampled_from(["sr", "inpaint", "sr", "nope", "", "../sr"])),
        version=draw(st.sampled_from([0, 0, 1, 2, -1])),
        images=draw(st.lists(st.one_of(encoded_images(), raw_images(), st.just(pb.SourceImage())), max_size=3)),
        output_format=draw(st.sampled_from([0, 1, 2, 3, 9])),
        priority=draw(st.sampled_from([0, 1, 2, 3])),
    )


def test_fuzzed_translate_requests_get_precise_statuses(translate_channel: grpc.Channel) -> None:
    stub = pb_grpc.GeneratorServiceStub(translate_channel)

    @settings(FUZZ, max_examples=TRANSLATE_EXAMPLES)
    @given(translate_requests())
    def check(request: pb.TranslateRequest) -> None:
        rejected_clearly(lambda: stub.Translate(request, timeout=30), TRANSLATE_FIELDS)

    check()


def test_a_well_formed_request_still_works_between_the_fuzz(channel: grpc.Channel) -> None:
    reply = pb_grpc.GeneratorServiceStub(channel).Generate(
        pb.GenerateRequest(model="digits", count=2, seed=1, labels=[3]), timeout=30
    )
    assert np.frombuffer(reply.tensor, "<f4").size == 2 * 16 * 16


# --- bytes that are not a message ----------------------------------------------------------------


def _string_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand so it can carry invalid UTF-8."""
    return bytes([(number << 3) | 2, len(payload)]) + payload


@pytest.mark.parametrize(
    "payload",
    [
        _string_field(1, b"dig\xffits"),  # non-UTF-8 model name
        _string_field(1, b"\xc3"),  # a truncated UTF-8 sequence
        b"\x0a\x7fabc",  # a length that runs past the end
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # a varint tag that never ends well
    ],
)
@pytest.mark.parametrize("method", ["/gan.v1.GeneratorService/Generate", "/inference.GRPCInferenceService/ModelInfer"])
def test_bytes_that_are_not_a_message_get_invalid_argument(channel: grpc.Channel, method: str, payload: bytes) -> None:
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as caught:
        call(payload, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert "request" in caught.value.details()


def test_a_request_over_the_size_limit_is_refused_with_the_limit(channel: grpc.Channel) -> None:
    request = v2.ModelInferRequest(model_name="digits")
    request.inputs.add(name="latent", datatype="FP32", shape=[1, 8])
    request.raw_input_contents.append(b"\x00" * (17 * 2**20))  # the server's limit is 16 MiB
    with pytest.raises(grpc.RpcError) as caught:
        v2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in caught.value.details()


def test_the_server_is_healthy_and_its_memory_flat_after_the_fuzz(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stub = v2_grpc.GRPCInferenceServiceStub(channel)
    bad = v2.ModelInferRequest(model_name="digits")
    bad.inputs.add(name="latent", datatype="FP32", shape=[2, 8])
    bad.raw_input_contents.append(b"\x00" * 60)  # 4 bytes short

    def burst() -> None:
        for _ in range(1500):
            rejected_clearly(lambda: stub.ModelInfer(bad, timeout=30), INFER_FIELDS)

    burst()
    before = _rss_bytes()
    burst()
    burst()
    growth = _rss_bytes() - before
    assert growth < 8 * 2**20, f"the process grew {growth / 2**20:.1f} MiB over 3,000 rejected requests"


def _rss_bytes() -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match
    return int(match.group(1)) * 1024
