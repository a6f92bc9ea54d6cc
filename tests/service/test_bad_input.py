"""Every bad request gets the right status and a message that names the field."""

from __future__ import annotations

import grpc
import pytest

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from tests.conftest import ServerThread

NAN_LATENTS = pb.Latents(values=[0.0] * 7 + [float("nan")])


@pytest.fixture(scope="module")
def stub(server: ServerThread) -> pb_grpc.GeneratorServiceStub:
    return pb_grpc.GeneratorServiceStub(grpc.insecure_channel(server.target))


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"model": "nope", "count": 1, "seed": 1}, grpc.StatusCode.NOT_FOUND, ["model: ", "'nope'", "digits"]),
        ({"model": "", "count": 1}, grpc.StatusCode.NOT_FOUND, ["model"]),
        ({"model": "../etc", "count": 1}, grpc.StatusCode.NOT_FOUND, ["'../etc'"]),
        ({"model": "digits", "version": 7, "count": 1}, grpc.StatusCode.NOT_FOUND, ["model: ", "version 7", "1"]),
        ({"model": "digits", "version": -1, "count": 1}, grpc.StatusCode.INVALID_ARGUMENT, ["version"]),
        ({"model": "digits", "count": 0, "seed": 1}, grpc.StatusCode.INVALID_ARGUMENT, ["count", "1 and 256"]),
        ({"model": "digits", "count": 257, "seed": 1}, grpc.StatusCode.INVALID_ARGUMENT, ["count", "256"]),
        ({"model": "digits", "count": 2, "labels": [10]}, grpc.StatusCode.INVALID_ARGUMENT, ["labels[0]", "0..9"]),
        ({"model": "digits", "count": 2, "labels": [-1]}, grpc.StatusCode.INVALID_ARGUMENT, ["labels[0]", "0..9"]),
        (
            {"model": "digits", "count": 3, "labels": [1, 2]},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["labels", "1 label or 3"],
        ),
        ({"model": "noise", "count": 2, "labels": [1]}, grpc.StatusCode.INVALID_ARGUMENT, ["labels", "unconditional"]),
        (
            {"model": "digits", "latents": pb.Latents(values=[0.0] * 7), "labels": [1]},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["latents", "latent_dim 8"],
        ),
        (
            {"model": "digits", "count": 3, "latents": pb.Latents(values=[0.0] * 16), "labels": [1]},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["count", "2"],
        ),
        (
            {"model": "digits", "latents": NAN_LATENTS, "labels": [1]},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["latents", "finite"],
        ),
        ({"model": "digits", "latents": pb.Latents(values=[0.0] * 8)}, grpc.StatusCode.INVALID_ARGUMENT, ["labels"]),
        ({"model": "digits", "count": 1, "output_format": 9}, grpc.StatusCode.INVALID_ARGUMENT, ["output_format"]),
    ],
)
def test_bad_request_gets_clear_status(
    stub: pb_grpc.GeneratorServiceStub, fields: dict[str, object], code: grpc.StatusCode, words: list[str]
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Generate(pb.GenerateRequest(**fields), timeout=10)
    assert raised.value.code() == code
    for word in words:
        assert word in raised.value.details()


def test_infinite_latent_is_rejected(stub: pb_grpc.GeneratorServiceStub) -> None:
    latents = pb.Latents(values=[float("inf")] + [0.0] * 7)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Generate(pb.GenerateRequest(model="digits", latents=latents, labels=[0]), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_unknown_model(stub: pb_grpc.GeneratorServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetModel(pb.GetModelRequest(name="missing"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND and raised.value.details().startswith("name: ")
    assert "missing" in raised.value.details()


@pytest.mark.parametrize(
    "method", ["/gan.v1.GeneratorService/NoSuchMethod", "/inference.GRPCInferenceService/Nope", "/no.Such/Service"]
)
def test_an_unknown_method_gets_unimplemented(server: ServerThread, method: str) -> None:
    """Every service is served through generic handlers (service/server.py): unknown paths still get UNIMPLEMENTED."""
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary(method, request_serializer=bytes, response_deserializer=bytes)
        with pytest.raises(grpc.RpcError) as raised:
            call(b"", timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_server_still_serves_after_bad_requests(stub: pb_grpc.GeneratorServiceStub) -> None:
    reply = stub.Generate(pb.GenerateRequest(model="digits", count=2, seed=1), timeout=10)
    assert len(reply.labels) == 2
