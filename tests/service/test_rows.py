"""Tabular models served: export, GenerateRows, its stream, conditions, errors, and the V2 path."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from gan_client.client import columns_of
from inference import grpc_service_pb2 as v2
from inference import grpc_service_pb2_grpc as v2_grpc
from service.sampling import chunk_seed
from tests.conftest import ServerThread, scrape
from tests.training.test_tabular import correlated_table


@pytest.fixture(scope="module")
def tabular_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.tabular.synthesizer import TabularConfig, train_table

    path = tmp_path_factory.mktemp("tabular") / "people.pt"
    train_table(correlated_table(300), TabularConfig(steps=40, batch_size=100, seed=1)).save(path)
    return path


@pytest.fixture(scope="module")
def rows_server(
    tabular_model: Path, model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    from export.cli import main as gan_export

    repository = tmp_path_factory.mktemp("tabular-models")
    assert gan_export([str(tabular_model), "--repository", str(repository), "--name", "people"]) == 0
    digits = model_repository / "digits"
    (repository / "digits").symlink_to(digits, target_is_directory=True)
    with ServerThread(model_repository=repository, max_count=200) as running:
        yield running


@pytest.fixture(scope="module")
def stub(rows_server: ServerThread) -> pb_grpc.GeneratorServiceStub:
    return pb_grpc.GeneratorServiceStub(grpc.insecure_channel(rows_server.target))


def rows(stub: pb_grpc.GeneratorServiceStub, **fields: object) -> pb.GenerateRowsResponse:
    reply: pb.GenerateRowsResponse = stub.GenerateRows(pb.GenerateRowsRequest(model="people", **fields), timeout=30)
    return reply


def test_the_model_lists_its_columns(stub: pb_grpc.GeneratorServiceStub) -> None:
    info = stub.GetModel(pb.GetModelRequest(name="people"), timeout=10)
    columns = {c.name: (c.kind, list(c.categories), c.nullable) for c in info.columns}
    assert columns["colour"][0] == "categorical" and set(columns["colour"][1]) == {"red", "blue", "green"}
    assert columns["count"][0] == "integer" and columns["income"] == ("continuous", [], True)
    assert "people" in {m.name for m in stub.ListModels(pb.ListModelsRequest(), timeout=10).models}


def test_rows_are_typed_and_are_those_gan_tabular_samples(
    stub: pb_grpc.GeneratorServiceStub, tabular_model: Path
) -> None:
    from training.tabular.synthesizer import load_synthesizer

    reply = rows(stub, count=120, seed=7)
    assert (
        reply.rows == 120
        and reply.seed == 7
        and [c.name for c in reply.columns] == ["x", "y", "colour", "count", "flag", "income"]
    )
    kinds = {c.name: c.WhichOneof("values") for c in reply.columns}
    assert kinds == {
        "x": "doubles",
        "y": "doubles",
        "colour": "strings",
        "count": "integers",
        "flag": "booleans",
        "income": "doubles",
    }
    served = columns_of(reply)
    local = load_synthesizer(tabular_model).sample(120, seed=7)
    assert served["colour"] == list(local["colour"]) and served["flag"] == list(local["flag"])
    np.testing.assert_allclose(np.array(served["x"], dtype=float), local["x"].to_numpy(), rtol=1e-4, atol=1e-4)
    assert columns_of(rows(stub, count=120, seed=7)) == served  # the same seed, the same rows
    zero = rows(stub, count=20, seed=0)
    assert zero.seed == 0 and columns_of(rows(stub, count=20, seed=0)) == columns_of(zero), "seed 0 is a seed"


def test_gaps_arrive_in_the_missing_mask_not_as_values(stub: pb_grpc.GeneratorServiceStub, tabular_model: Path) -> None:
    """income had gaps in training: the rows the model leaves without one say so in `missing`
    (the value slot holds 0), where gan-tabular sample has NaN."""
    from training.tabular.synthesizer import load_synthesizer

    reply = rows(stub, count=200, seed=5)
    income = next(column for column in reply.columns if column.name == "income")
    gaps = load_synthesizer(tabular_model).sample(200, seed=5)["income"].isna().tolist()
    assert any(gaps), "the model leaves some incomes missing"
    assert list(income.missing) == gaps
    assert all(value is None for value, gap in zip(columns_of(reply)["income"], gaps, strict=True) if gap)


def test_numbers_stay_within_the_range_seen_in_training(stub: pb_grpc.GeneratorServiceStub) -> None:
    table = correlated_table(300)  # what the model was trained on
    served = columns_of(rows(stub, count=200, seed=11))
    for name in ("x", "y", "count", "income"):
        values = np.array([value for value in served[name] if value is not None], dtype=float)
        assert table[name].min() <= values.min() and values.max() <= table[name].max(), name


def test_a_category_left_missing_is_marked_missing_not_sent_as_a_value(tmp_path: Path) -> None:
    """A categorical column with gaps in training: the rows that leave it missing say so in
    `missing` (the slot holds ""), where gan-tabular sample has None."""
    from export.cli import main as gan_export
    from training.tabular.synthesizer import TabularConfig, load_synthesizer, train_table

    table = correlated_table(300)
    table.loc[table.index % 4 == 0, "colour"] = None
    checkpoint = tmp_path / "gappy.pt"
    train_table(table, TabularConfig(steps=40, batch_size=100, seed=1)).save(checkpoint)
    assert gan_export([str(checkpoint), "--repository", str(tmp_path / "models"), "--name", "gappy"]) == 0
    gaps = load_synthesizer(checkpoint).sample(100, seed=2)["colour"].isna().tolist()
    assert any(gaps), "the model leaves some colours missing"
    with ServerThread(model_repository=tmp_path / "models") as running:
        stub = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(running.target))
        reply = stub.GenerateRows(pb.GenerateRowsRequest(model="gappy", count=100, seed=2), timeout=30)
    colour = next(column for column in reply.columns if column.name == "colour")
    assert list(colour.missing) == gaps
    assert [value is None for value in columns_of(reply)["colour"]] == gaps


def test_conditions_are_honoured_and_bad_ones_named(stub: pb_grpc.GeneratorServiceStub) -> None:
    green = columns_of(rows(stub, count=30, seed=1, conditions={"colour": "green", "flag": "True"}))
    assert set(green["colour"]) == {"green"} and set(green["flag"]) == {True}
    for conditions, words in (
        ({"colour": "purple"}, "condition colour='purple': unknown value"),
        ({"shape": "round"}, "condition shape: no such column"),
        ({"x": "1.0"}, "only categorical and boolean columns"),
        ({"income": "1.0"}, "only categorical and boolean columns"),  # its gaps condition training, not users
    ):
        with pytest.raises(grpc.RpcError) as caught:
            rows(stub, count=5, conditions=conditions)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in caught.value.details()


@pytest.mark.parametrize(
    ("request_fields", "code", "words"),
    [
        ({"model": "people", "count": 0}, grpc.StatusCode.INVALID_ARGUMENT, "count: must be between 1 and 200"),
        ({"model": "people", "count": 201}, grpc.StatusCode.INVALID_ARGUMENT, "count: must be between 1 and 200"),
        ({"model": "digits", "count": 5}, grpc.StatusCode.FAILED_PRECONDITION, "digits is not a tabular model"),
        ({"model": "nope", "count": 5}, grpc.StatusCode.NOT_FOUND, "nope"),
    ],
)
def test_bad_requests_get_the_right_status(
    stub: pb_grpc.GeneratorServiceStub, request_fields: dict[str, object], code: grpc.StatusCode, words: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.GenerateRows(pb.GenerateRowsRequest(**request_fields), timeout=10)
    assert caught.value.code() == code and words in caught.value.details()


def test_generate_on_a_tabular_model_points_to_generate_rows(stub: pb_grpc.GeneratorServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Generate(pb.GenerateRequest(model="people", count=1, seed=1), timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "GenerateRows" in caught.value.details()


def test_the_stream_sends_chunks_beyond_max_count(stub: pb_grpc.GeneratorServiceStub) -> None:
    request = pb.GenerateRowsRequest(model="people", count=450, seed=3, chunk_rows=200)
    replies = list(stub.GenerateRowsStream(request, timeout=60))
    assert [(r.offset, r.rows) for r in replies] == [(0, 200), (200, 200), (400, 50)]
    unset = list(stub.GenerateRowsStream(pb.GenerateRowsRequest(model="people", count=450, seed=3), timeout=60))
    assert [(r.offset, r.rows) for r in unset] == [(0, 200), (200, 200), (400, 50)], "chunk_rows unset: max_count"
    assert columns_of(replies[0]) == columns_of(rows(stub, count=200, seed=3)), "chunk 0: the rows of the seed"
    assert columns_of(replies[1]) == columns_of(rows(stub, count=200, seed=chunk_seed(3, 1)))
    nearby = list(
        stub.GenerateRowsStream(pb.GenerateRowsRequest(model="people", count=400, seed=4, chunk_rows=200), timeout=60)
    )
    assert all(columns_of(a) != columns_of(b) for a in replies for b in nearby), "seeds 3 and 4 share no chunk"
    last = pb.GenerateRowsRequest(model="people", count=3, seed=2**64 - 1, chunk_rows=1)
    assert [r.rows for r in stub.GenerateRowsStream(last, timeout=60)] == [1, 1, 1], "the largest seed streams too"
    beyond = stub.GenerateRowsStream(pb.GenerateRowsRequest(model="people", count=100_000_001), timeout=10)
    with pytest.raises(grpc.RpcError) as caught:
        next(beyond)  # refused before the first chunk, not streamed for hours
    beyond.cancel()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "count: must be between 1 and 100000000" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.GenerateRowsStream(pb.GenerateRowsRequest(model="people", count=10, chunk_rows=500), timeout=10))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "chunk_rows" in caught.value.details()


def test_a_stream_is_a_call_in_flight_until_it_ends(
    stub: pb_grpc.GeneratorServiceStub, rows_server: ServerThread
) -> None:
    """Streams pass the call guard like unary calls: counted in flight (so the drain waits for
    them and GAN_MAX_CONCURRENT_CALLS applies), refused while the server drains."""
    gauge = 'gan_requests_in_flight{method="GenerateRowsStream"}'
    request = pb.GenerateRowsRequest(model="people", count=100_000, seed=1, chunk_rows=10)
    stream = stub.GenerateRowsStream(request, timeout=60)
    next(stream)
    assert scrape(rows_server)[gauge] == 1
    stream.cancel()
    deadline = time.monotonic() + 10
    while scrape(rows_server)[gauge] != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scrape(rows_server)[gauge] == 0


def test_at_most_max_concurrent_calls_run_and_calls_that_end_free_their_place(rows_server: ServerThread) -> None:
    """Two streams held open fill GAN_MAX_CONCURRENT_CALLS 2: a third call is refused at once;
    once they end, their places are free again, round after round."""
    with ServerThread(model_repository=rows_server.settings.model_repository, max_concurrent_calls=2) as limited:
        stub = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(limited.target))
        gauge = 'gan_requests_in_flight{method="GenerateRowsStream"}'
        for _ in range(2):
            streams = [
                stub.GenerateRowsStream(
                    pb.GenerateRowsRequest(model="people", count=100_000, seed=seed, chunk_rows=10), timeout=60
                )
                for seed in (1, 2)
            ]
            for stream in streams:
                next(stream)
            with pytest.raises(grpc.RpcError) as caught:
                rows(stub, count=5, seed=1)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "GAN_MAX_CONCURRENT_CALLS" in caught.value.details()
            for stream in streams:
                stream.cancel()
            deadline = time.monotonic() + 10
            while scrape(limited)[gauge] != 0 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert rows(stub, count=5, seed=1).rows == 5


def test_the_v2_api_runs_the_same_model_on_raw_tensors(rows_server: ServerThread) -> None:
    v2_stub = v2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(rows_server.target))
    metadata = v2_stub.ModelMetadata(v2.ModelMetadataRequest(name="people"), timeout=10)
    shapes = {t.name: list(t.shape) for t in metadata.inputs}
    latent = np.zeros((3, shapes["latent"][1]), dtype=np.float32)
    condition = np.zeros((3, shapes["condition"][1]), dtype=np.float32)
    request = v2.ModelInferRequest(model_name="people")
    for name, array in (("latent", latent), ("condition", condition)):
        request.inputs.add(name=name, datatype="FP32", shape=list(array.shape))
        request.raw_input_contents.append(array.tobytes())
    reply = v2_stub.ModelInfer(request, timeout=10)
    assert reply.outputs[0].name == "logits" and reply.outputs[0].shape[0] == 3


def test_gan_client_rows_streams_into_a_csv_file(rows_server: ServerThread, tmp_path: Path) -> None:
    import csv

    from gan_client.cli import main as gan_client

    out = tmp_path / "rows.csv"
    command = ["--target", rows_server.target, "rows", "--model", "people", "--count", "450", "--seed", "3"]
    assert gan_client([*command, "--chunk-rows", "200", "--condition", "colour=red", "--out", str(out)]) == 0
    table = list(csv.DictReader(out.open()))
    assert len(table) == 450 and {row["colour"] for row in table} == {"red"}
    assert list(table[0]) == ["x", "y", "colour", "count", "flag", "income"]
    with pytest.raises(SystemExit, match=r"--out must end in \.csv or \.parquet"):
        gan_client([*command, "--out", str(tmp_path / "rows.txt")])
    assert gan_client([*command, "--condition", "colour=purple", "--out", str(out)]) == 1
    assert len(list(csv.DictReader(out.open()))) == 450  # a failed call leaves the earlier file alone
    assert sorted(path.name for path in tmp_path.iterdir()) == ["rows.csv"], "and no partial file beside it"


def test_reloads_during_multi_round_rows_and_streams_fail_nothing(tabular_model: Path, tmp_path: Path) -> None:
    """Conditioned rows take several session runs; a stream several chunks. Reloading the model in
    place between them used to close the batcher under them (UNAVAILABLE) or switch versions."""
    from export.cli import main as gan_export

    repository = tmp_path / "models"
    assert gan_export([str(tabular_model), "--repository", str(repository), "--name", "people"]) == 0
    onnx = repository / "people" / "1" / "model.onnx"
    with ServerThread(model_repository=repository, model_control_mode="explicit", max_count=200) as server:
        channel = grpc.insecure_channel(server.target)
        stub, admin = pb_grpc.GeneratorServiceStub(channel), v2_grpc.GRPCInferenceServiceStub(channel)
        failures: list[str] = []
        stream_versions: list[set[int]] = []
        stop = threading.Event()

        def conditioned_rows() -> None:
            while not stop.is_set():
                try:
                    rows(stub, count=200, conditions={"colour": "red"})
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code().name}: {exc.details()}")

        def streams() -> None:
            while not stop.is_set():
                request = pb.GenerateRowsRequest(model="people", count=2000, seed=5, chunk_rows=100)
                try:
                    stream_versions.append({r.version for r in stub.GenerateRowsStream(request, timeout=60)})
                except grpc.RpcError as exc:
                    failures.append(f"stream {exc.code().name}: {exc.details()}")

        threads = [threading.Thread(target=conditioned_rows) for _ in range(3)] + [threading.Thread(target=streams)]
        for thread in threads:
            thread.start()
        for step in range(10):
            if step % 2:  # a new version...
                staging = repository / "people" / ".staging"
                staging.mkdir()
                shutil.copy(onnx, staging / "model.onnx")
                staging.rename(repository / "people" / "2")
            else:  # ...or the same version, reloaded in place
                os.utime(onnx, ns=(time.time_ns() + step * 10**9,) * 2)
            admin.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="people"), timeout=60)
            if step % 2:
                shutil.rmtree(repository / "people" / "2")
            time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []
    assert stream_versions and all(len(versions) == 1 for versions in stream_versions), stream_versions
