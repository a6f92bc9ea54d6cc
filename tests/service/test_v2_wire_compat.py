"""Wire compatibility with Triton: the stock tritonclient drives the real server unchanged.

tritonclient pins protobuf < 7 and the project runs protobuf 7, so it lives in its own
virtualenv, .venv-tritonclient (tests/tritonclient/venv.py builds it on first use).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from inference import grpc_service_pb2 as v2
from inference import grpc_service_pb2_grpc as v2_grpc
from tests.conftest import ServerThread, scrape
from tests.tritonclient import venv


def tritonclient_python() -> Path:
    try:
        return venv.tritonclient_python()
    except venv.VenvError as exc:
        pytest.fail(str(exc))


def drive(*args: str) -> Any:
    done = subprocess.run(
        [str(tritonclient_python()), str(venv.DRIVER), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def our_messages() -> tuple[dict[str, list[str]], dict[str, dict[str, list[Any]]]]:
    """The same shape of description as drive.py's, from our own descriptors."""
    messages: dict[str, dict[str, list[Any]]] = {}

    def walk(message: Any) -> None:
        if message.full_name in messages:
            return
        messages[message.full_name] = {}
        for field in message.fields:
            target = field.message_type or field.enum_type
            messages[message.full_name][field.name] = [
                field.number,
                field.type,
                bool(field.is_repeated),
                target.full_name if target is not None else "",
            ]
            if field.message_type is not None:
                walk(field.message_type)

    methods = {}
    for method in v2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
        methods[method.name] = [method.input_type.full_name, method.output_type.full_name]
        walk(method.input_type)
        walk(method.output_type)
    return methods, messages


def test_every_method_message_and_field_we_declare_matches_triton() -> None:
    theirs = drive("descriptors")
    methods, messages = our_messages()
    for name, types in methods.items():
        assert theirs["methods"].get(name) == types, f"method {name}"
    for message, fields in messages.items():
        assert message in theirs["messages"], f"Triton has no message {message}"
        for field, description in fields.items():
            assert theirs["messages"][message].get(field) == description, f"{message}.{field}"


@pytest.fixture(scope="module")
def seen(server: ServerThread) -> dict[str, Any]:
    result: dict[str, Any] = drive("calls", server.target)
    return result


def test_tritonclient_health_metadata_and_config(seen: dict[str, Any]) -> None:
    assert seen["live"] and seen["ready"] and seen["model_ready"]
    assert seen["server_metadata"]["name"] == "gan-serving"
    inputs = {t["name"]: (t["datatype"], t["shape"]) for t in seen["model_metadata"]["inputs"]}
    assert inputs == {"latent": ("FP32", ["-1", "8"]), "class_weights": ("FP32", ["-1", "10"])}
    outputs = {t["name"]: (t["datatype"], t["shape"]) for t in seen["model_metadata"]["outputs"]}
    assert outputs == {"image": ("FP32", ["-1", "1", "16", "16"])}
    config = seen["model_config"]["config"]
    assert config["name"] == "digits" and config["max_batch_size"] == 64
    assert {i["name"]: i["data_type"] for i in config["input"]} == {"latent": "TYPE_FP32", "class_weights": "TYPE_FP32"}
    states = {(m["name"], m.get("version"), m.get("state")) for m in seen["index"]["models"]}
    assert ("digits", "1", "READY") in states


def test_tritonclient_infer_gives_what_our_own_stubs_get(seen: dict[str, Any], server: ServerThread) -> None:
    image = np.asarray(seen["image"], dtype=np.float32)
    assert image.shape == (4, 1, 16, 16) and np.isfinite(image).all()
    assert image.min() >= -1 and image.max() <= 1
    assert seen["response"]["id"] == "r-1" and seen["response"]["model_version"] == "1"
    np.testing.assert_array_equal(np.asarray(seen["image_async"], dtype=np.float32), image)
    latent = np.asarray(seen["latent"], dtype=np.float32)
    weights = np.asarray(seen["class_weights"], dtype=np.float32)
    request = v2.ModelInferRequest(model_name="digits")
    for name, datatype, array in (("latent", "FP32", latent), ("class_weights", "FP32", weights)):
        request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        request.raw_input_contents.append(array.tobytes())
    stub = v2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.target))
    ours = stub.ModelInfer(request, timeout=30)
    np.testing.assert_array_equal(np.frombuffer(ours.raw_output_contents[0], "<f4").reshape(image.shape), image)
    stats = seen["statistics"]["model_stats"][0]
    assert int(stats["inference_count"]) >= 8 and int(stats["execution_count"]) >= 1


def test_tritonclient_sees_our_errors(seen: dict[str, Any]) -> None:
    assert seen["unknown_model"]["status"] == "StatusCode.NOT_FOUND"
    assert "nothing" in seen["unknown_model"]["message"]
    assert seen["wrong_shape"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "latent" in seen["wrong_shape"]["message"]
    assert seen["unload"]["status"] == "StatusCode.FAILED_PRECONDITION"


def test_tritonclient_load_loop_counts_what_the_server_answered(server: ServerThread) -> None:
    """The closed loops bench/serve_bench.py --client tritonclient runs: every answer timed, none failed."""
    key = 'gan_requests_total{code="OK",method="ModelInfer",model="digits"}'
    before = scrape(server).get(key, 0.0)
    feeds = [
        {"name": "latent", "datatype": "FP32", "shape": [1, 8], "data": [0.0] * 8},
        {"name": "class_weights", "datatype": "FP32", "shape": [1, 10], "data": [0.0] * 7 + [1.0, 0.0, 0.0]},
    ]
    seen = drive("load", server.target, "digits", "3", "0.5", json.dumps(feeds))
    assert seen["errors"] == 0 and seen["requests"] > 0
    assert len(seen["latencies_ms"]) == seen["requests"] and min(seen["latencies_ms"]) > 0
    answered = scrape(server)[key] - before
    assert answered >= seen["requests"]  # plus the warm-up second's calls, which are not timed
