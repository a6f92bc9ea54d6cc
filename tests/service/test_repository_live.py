"""The live model repository on the real server: poll, explicit control, policies, failed loads."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from inference import grpc_service_pb2 as v2
from inference import grpc_service_pb2_grpc as v2_grpc
from service.batcher import BatcherClosed, Priority
from service.errors import ModelLoadError
from service.repository import ModelVersion, Repository
from tests.conftest import ServerThread, scrape
from tests.service.onnx_models import write_external_data_model

POLL = {"model_control_mode": "poll", "repository_poll_s": 0.1}


def add_version(source: Path, model_dir: Path, version: int) -> None:
    """Publish a version the way gan-export does: write aside, then rename into place."""
    staging = model_dir / f".staging-{version}"
    staging.mkdir(parents=True)
    shutil.copy(source, staging / "model.onnx")
    os.replace(staging, model_dir / str(version))


def fresh_repository(model_repository: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "digits").mkdir(parents=True)
    add_version(model_repository / "digits" / "1" / "model.onnx", root / "digits", 1)
    return root


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def v2_stub(server: ServerThread) -> v2_grpc.GRPCInferenceServiceStub:
    return v2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.target))


def ready(stub: v2_grpc.GRPCInferenceServiceStub, name: str, version: str = "") -> bool:
    return stub.ModelReady(v2.ModelReadyRequest(name=name, version=version), timeout=10).ready


def index(stub: v2_grpc.GRPCInferenceServiceStub) -> dict[tuple[str, str], tuple[str, str]]:
    reply = stub.RepositoryIndex(v2.RepositoryIndexRequest(), timeout=10)
    return {(m.name, m.version): (m.state, m.reason) for m in reply.models}


class Traffic:
    """Generate requests in a loop on another thread, counting failures."""

    def __init__(self, server: ServerThread) -> None:
        self._stub = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(server.target))
        self._stop = threading.Event()
        self.versions: list[int] = []
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        seed = 0
        while not self._stop.is_set():
            seed += 1
            try:
                reply = self._stub.Generate(pb.GenerateRequest(model="digits", count=2, seed=seed), timeout=30)
                self.versions.append(reply.version)
            except grpc.RpcError as exc:
                self.errors.append(f"{exc.code()}: {exc.details()}")


def test_poll_swaps_in_a_new_version_without_failing_a_request(model_repository: Path, tmp_path: Path) -> None:
    root = fresh_repository(model_repository, tmp_path)
    with ServerThread(model_repository=root, **POLL) as server, Traffic(server) as traffic:
        stub = v2_stub(server)
        wait_for(lambda: len(traffic.versions) > 5, "traffic on version 1")
        add_version(root / "digits" / "1" / "model.onnx", root / "digits", 2)
        wait_for(lambda: ready(stub, "digits", "2"), "version 2 to be ready")
        wait_for(lambda: not ready(stub, "digits", "1"), "version 1 to be retired (policy: latest 1)")
        served = {key for key, value in scrape(server).items() if key.startswith("gan_model_ready{") and value == 1}
        assert served == {'gan_model_ready{model="digits",provider="CPUExecutionProvider",version="2"}'}
        count = len(traffic.versions)
        wait_for(lambda: len(traffic.versions) > count + 5, "traffic on version 2")
    assert traffic.errors == []
    assert traffic.versions[0] == 1 and traffic.versions[-1] == 2


def test_a_corrupt_new_version_leaves_the_serving_one_in_place(model_repository: Path, tmp_path: Path) -> None:
    root = fresh_repository(model_repository, tmp_path)
    with ServerThread(model_repository=root, **POLL) as server, Traffic(server) as traffic:
        stub = v2_stub(server)
        assert scrape(server)['gan_model_load_failures_total{model="digits"}'] == 0, "a series from the start"
        broken = tmp_path / "broken.onnx"
        broken.write_bytes((root / "digits" / "1" / "model.onnx").read_bytes()[:1000])  # truncated
        add_version(broken, root / "digits", 2)
        wait_for(lambda: index(stub).get(("digits", "2"), ("",))[0] == "UNAVAILABLE", "the failed load's report")
        state, reason = index(stub)[("digits", "2")]
        assert state == "UNAVAILABLE" and "onnxruntime cannot load" in reason
        assert (
            reason.startswith("digits/2/model.onnx: ") and str(root) not in reason
        )  # the server's layout stays private
        assert ready(stub, "digits", "1") and not ready(stub, "digits", "2")
        assert stub.ServerReady(v2.ServerReadyRequest(), timeout=10).ready
        generator = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(server.target))
        with pytest.raises(grpc.RpcError) as caught:
            generator.Generate(pb.GenerateRequest(model="digits", version=2, count=1, seed=1), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "cannot load" in (caught.value.details() or "")
        assert str(root) not in (caught.value.details() or "")
        assert scrape(server)['gan_model_load_failures_total{model="digits"}'] >= 1
    assert traffic.errors == [] and set(traffic.versions) == {1}


def test_a_version_reloaded_in_place_keeps_its_queue_gauges(model_repository: Path, tmp_path: Path) -> None:
    root = fresh_repository(model_repository, tmp_path)
    labels = '{model="digits",version="1"}'
    with ServerThread(model_repository=root, **POLL) as server:
        assert scrape(server)[f"gan_queue_capacity_samples{labels}"] > 0
        (root / "digits" / "config.json").write_text(json.dumps({"max_queue_size": 777}))  # reloads version 1
        wait_for(lambda: scrape(server).get(f"gan_queue_capacity_samples{labels}") == 777, "the new copy's gauges")
        time.sleep(0.5)  # the old copy has been retired by now: its retirement must leave the series
        metrics = scrape(server)
        assert metrics[f"gan_queue_capacity_samples{labels}"] == 777
        assert f"gan_queue_depth_samples{labels}" in metrics


def test_a_reload_in_place_while_a_request_is_queued_leaves_no_queue_depth_behind(
    model_repository: Path, tmp_path: Path
) -> None:
    root = fresh_repository(model_repository, tmp_path)
    config = {"max_queue_delay_ms": 3000}  # right after a run of 2, a request of 1 waits for company
    (root / "digits" / "config.json").write_text(json.dumps(config))
    labels = '{model="digits",version="1"}'
    depth = f"gan_queue_depth_samples{labels}"
    with ServerThread(model_repository=root, **POLL) as server:
        stub = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(server.target))
        stub.Generate(pb.GenerateRequest(model="digits", count=2, seed=1), timeout=30)
        queued = stub.Generate.future(pb.GenerateRequest(model="digits", count=1, seed=2), timeout=30)
        wait_for(lambda: scrape(server).get(depth) == 1, "the request in the queue")
        (root / "digits" / "config.json").write_text(json.dumps({**config, "max_queue_size": 777}))  # reloads v1
        assert queued.result().version == 1  # the retired copy drains its queue
        wait_for(lambda: scrape(server).get(f"gan_queue_capacity_samples{labels}") == 777, "the new copy")
        assert scrape(server)[depth] == 0


def test_a_bad_config_is_counted_once_per_change_and_a_policy_must_select_a_version(
    model_repository: Path, tmp_path: Path
) -> None:
    root = fresh_repository(model_repository, tmp_path)
    (root / "other").mkdir()
    add_version(root / "digits" / "1" / "model.onnx", root / "other", 1)
    (root / "other" / "config.json").write_text(json.dumps({"version_policy": {"specific": [2]}}))
    with (
        pytest.raises(
            ModelLoadError, match=r"version_policy specific \[2\] selects none of the versions on disk \(1\)"
        ),
        ServerThread(model_repository=root),
    ):
        pass
    (root / "other" / "config.json").write_text("{not json")
    with ServerThread(model_repository=root, exit_on_error=False, **POLL) as server:
        time.sleep(1.0)  # ten polls of the same bad file
        assert scrape(server)['gan_model_load_failures_total{model="other"}'] == 1
        assert index(v2_stub(server))[("other", "")][1].startswith("other/config.json: not a valid model config")


def test_a_relative_repository_leaves_names_that_contain_it_whole(
    model_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GAN_MODEL_REPOSITORY=models (the default): only the leading `models/` goes, not the one in `old-models/`."""
    root = fresh_repository(model_repository, tmp_path)
    (root / "old-models").mkdir()
    add_version(root / "digits" / "1" / "model.onnx", root / "old-models", 1)
    (root / "old-models" / "config.json").write_text("{not json")
    monkeypatch.chdir(tmp_path)
    with ServerThread(model_repository=Path("models"), exit_on_error=False) as server:
        reason = index(v2_stub(server))[("old-models", "")][1]
    assert reason.startswith("old-models/config.json: not a valid model config"), reason


def test_a_policy_changed_to_select_nothing_leaves_the_serving_version(model_repository: Path, tmp_path: Path) -> None:
    root = fresh_repository(model_repository, tmp_path)
    with ServerThread(model_repository=root, **POLL) as server:
        stub = v2_stub(server)
        staged = root / "digits" / ".config.json"  # written aside and renamed: a poll never reads half a file
        staged.write_text(json.dumps({"version_policy": {"specific": [2]}}))
        staged.replace(root / "digits" / "config.json")
        wait_for(lambda: ("digits", "") in index(stub), "the policy's failure in the index")
        assert index(stub)[("digits", "")][1].startswith("digits/config.json: version_policy specific [2] selects none")
        assert ready(stub, "digits", "1"), "like a failed load: what served keeps serving"
        staged.write_text(json.dumps({"version_policy": {"latest": 1}}))
        staged.replace(root / "digits" / "config.json")
        wait_for(lambda: ("digits", "") not in index(stub), "the fixed policy to clear the failure from the index")


def test_a_model_removed_from_disk_is_unloaded(model_repository: Path, tmp_path: Path) -> None:
    root = fresh_repository(model_repository, tmp_path)
    (root / "other").mkdir()
    add_version(root / "digits" / "1" / "model.onnx", root / "other", 1)
    with ServerThread(model_repository=root, **POLL) as server:
        stub = v2_stub(server)
        assert ready(stub, "other")
        shutil.rmtree(root / "other")
        wait_for(lambda: not ready(stub, "other"), "the removed model to be unloaded")
        assert ("other", "1") not in index(stub) and ready(stub, "digits")
        assert stub.ServerReady(v2.ServerReadyRequest(), timeout=10).ready, "a model gone from disk is not required"


def test_version_policies_choose_what_is_served(model_repository: Path, tmp_path: Path) -> None:
    root = fresh_repository(model_repository, tmp_path)
    for version in (2, 3):
        add_version(root / "digits" / "1" / "model.onnx", root / "digits", version)
    (root / "digits" / "config.json").write_text(json.dumps({"version_policy": {"specific": [1, 3]}}))
    with ServerThread(model_repository=root, **POLL) as server:
        stub = v2_stub(server)
        assert [ready(stub, "digits", str(v)) for v in (1, 2, 3)] == [True, False, True]
        (root / "digits" / "config.json").write_text(json.dumps({"version_policy": {"all": True}}))
        wait_for(lambda: ready(stub, "digits", "2"), "the all-versions policy")
        metadata = stub.ModelMetadata(v2.ModelMetadataRequest(name="digits"), timeout=10)
        assert metadata.versions == ["3", "2", "1"]
        generator = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(server.target))
        assert generator.Generate(pb.GenerateRequest(model="digits", count=1, seed=1), timeout=30).version == 3
        (root / "digits" / "config.json").write_text(json.dumps({"version_policy": {"latest": 2}}))
        wait_for(lambda: not ready(stub, "digits", "1"), "the latest-2 policy to drop version 1")
        assert [ready(stub, "digits", str(v)) for v in (1, 2, 3)] == [False, True, True]
        assert sorted(index(stub)) == [("digits", "2"), ("digits", "3")], "a dropped version leaves the index"


def test_explicit_mode_loads_and_unloads_on_request(model_repository: Path, tmp_path: Path) -> None:
    root = fresh_repository(model_repository, tmp_path)
    with ServerThread(model_repository=root, model_control_mode="explicit") as server:
        stub = v2_stub(server)
        stub.RepositoryModelUnload(v2.RepositoryModelUnloadRequest(model_name="digits"), timeout=10)
        assert not ready(stub, "digits")
        assert stub.ServerReady(v2.ServerReadyRequest(), timeout=10).ready, "an unloaded model is not required"
        assert index(stub)[("digits", "")] == ("UNAVAILABLE", "not loaded")
        add_version(root / "digits" / "1" / "model.onnx", root / "digits", 2)
        time.sleep(0.3)
        assert not ready(stub, "digits"), "explicit mode does not follow the disk by itself"
        stub.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="digits"), timeout=30)
        assert ready(stub, "digits", "2")
        refused = (("absent", grpc.StatusCode.NOT_FOUND), ("../digits", grpc.StatusCode.INVALID_ARGUMENT))
        for name, code in (*refused, ("digits\n", grpc.StatusCode.INVALID_ARGUMENT)):
            with pytest.raises(grpc.RpcError) as caught:
                stub.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name=name), timeout=10)
            assert caught.value.code() == code and "model_name" in (caught.value.details() or "")


def test_explicit_load_of_a_broken_new_copy_fails_and_the_old_one_keeps_serving(
    model_repository: Path, tmp_path: Path
) -> None:
    root = fresh_repository(model_repository, tmp_path)
    with ServerThread(model_repository=root, model_control_mode="explicit") as server:
        stub = v2_stub(server)
        (root / "digits" / "1" / "model.onnx").write_bytes(b"not an onnx file")
        with pytest.raises(grpc.RpcError) as caught:
            stub.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="digits"), timeout=30)
        details = caught.value.details() or ""
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, details
        assert "keeps serving" in details, details
        assert ready(stub, "digits", "1")
        state, reason = index(stub)[("digits", "1")]
        assert state == "READY" and "cannot load" in reason and "keeps serving" in reason
        generator = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(server.target))
        assert generator.Generate(pb.GenerateRequest(model="digits", count=1, seed=1), timeout=30).version == 1


def test_explicit_load_refuses_parameters_and_unload_is_idempotent(model_repository: Path, tmp_path: Path) -> None:
    root = fresh_repository(model_repository, tmp_path)
    with ServerThread(model_repository=root, model_control_mode="explicit") as server:
        stub = v2_stub(server)
        request = v2.RepositoryModelLoadRequest(model_name="digits")
        request.parameters["config"].string_param = '{"max_batch_size": 4}'
        with pytest.raises(grpc.RpcError) as caught:
            stub.RepositoryModelLoad(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "parameters['config']" in (caught.value.details() or "")
        for _ in range(2):  # a retried unload (or one of a model never loaded) succeeds, as in Triton
            stub.RepositoryModelUnload(v2.RepositoryModelUnloadRequest(model_name="digits"), timeout=10)
        stub.RepositoryModelUnload(v2.RepositoryModelUnloadRequest(model_name="absent"), timeout=10)
        assert not ready(stub, "digits")


def test_readiness_is_strict_and_follows_the_repository(model_repository: Path, tmp_path: Path) -> None:
    root = fresh_repository(model_repository, tmp_path)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match="broken"), ServerThread(model_repository=root):
        pass
    with ServerThread(model_repository=root, exit_on_error=False, **POLL) as server:
        stub = v2_stub(server)
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.target))

        def serving() -> bool:
            reply = health.Check(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=10)
            return reply.status == health_pb2.HealthCheckResponse.SERVING

        assert not stub.ServerReady(v2.ServerReadyRequest(), timeout=10).ready and not serving()
        alive = health.Check(health_pb2.HealthCheckRequest(service="liveness"), timeout=10)
        assert alive.status == health_pb2.HealthCheckResponse.SERVING, "not ready must not mean not alive"
        assert scrape(server)["gan_server_ready"] == 0
        time.sleep(1.0)  # ten polls: an unchanged broken file is not loaded (nor logged) again
        assert scrape(server)['gan_model_load_failures_total{model="broken"}'] == 1
        assert ready(stub, "digits"), "the good model serves while the broken one is reported"
        shutil.copy(root / "digits" / "1" / "model.onnx", root / "broken" / "1" / "model.onnx")
        wait_for(lambda: stub.ServerReady(v2.ServerReadyRequest(), timeout=10).ready, "the fixed model to load")
        wait_for(serving, "health to turn SERVING")
        assert scrape(server)["gan_server_ready"] == 1


def one_sample_of(model: ModelVersion) -> dict[str, np.ndarray]:
    """Zeros for every input of `model`, one sample."""
    return {spec.name: np.zeros((1, *spec.shape[1:]), dtype=np.float32) for spec in model.runtime.inputs}


async def look_up_then_reload_then_submit(repository: Repository, root: Path, new_file: Path, pinned: bool) -> int:
    """Look up digits' newest version, publish `new_file` as the next one and load it, then submit one
    sample decoded against the version looked up; the version that ran it."""
    looked_up = repository.get("digits")  # a call decoded against this version...
    add_version(new_file, root / "digits", looked_up.version + 1)
    await repository.load_model("digits")  # ...which a reload retires before it is submitted
    while repository._retiring:
        await asyncio.gather(*list(repository._retiring))
    model, _ = await repository.submit(looked_up, one_sample_of(looked_up), None, Priority.NORMAL, pinned=pinned)
    return model.version


def test_a_request_that_looked_up_a_version_just_retired_runs_on_its_successor(
    model_repository: Path, tmp_path: Path
) -> None:
    root = fresh_repository(model_repository, tmp_path)
    with ServerThread(model_repository=root, model_control_mode="explicit") as server:
        repository = server.server.repository
        same_model = root / "digits" / "1" / "model.onnx"
        assert server._call(look_up_then_reload_then_submit(repository, root, same_model, pinned=False)) == 2
        with pytest.raises(BatcherClosed):  # a pinned version is never swapped for another
            server._call(look_up_then_reload_then_submit(repository, root, same_model, pinned=True))
        other_inputs = model_repository / "noise" / "1" / "model.onnx"  # no class_weights input
        with pytest.raises(BatcherClosed):  # the call was decoded for inputs the successor does not take
            server._call(look_up_then_reload_then_submit(repository, root, other_inputs, pinned=False))


def test_closing_the_repository_closes_a_retired_version_a_request_still_holds(
    model_repository: Path, tmp_path: Path
) -> None:
    root = fresh_repository(model_repository, tmp_path)
    with ServerThread(model_repository=root, model_control_mode="explicit") as server:
        repository = server.server.repository
        inputs = one_sample_of(repository.get("digits"))

        async def hold_through_a_reload_and_a_shutdown() -> None:
            old = repository.get("digits")
            with repository.holding(old):  # a row stream, say, mid-way
                add_version(root / "digits" / "1" / "model.onnx", root / "digits", 2)
                await repository.load_model("digits")
                while repository._retiring:  # whatever the reload closes
                    await asyncio.gather(*list(repository._retiring))
                await repository.submit(old, inputs, None, Priority.NORMAL, pinned=True)  # held: still open
                await repository.close()  # shutdown: nothing may stay open, held or not
                with pytest.raises(BatcherClosed):
                    await old.batcher.submit(inputs, None, Priority.NORMAL)

        server._call(hold_through_a_reload_and_a_shutdown())


def test_a_poll_that_fails_does_not_stop_polling(model_repository: Path, tmp_path: Path) -> None:
    root = fresh_repository(model_repository, tmp_path)
    with ServerThread(model_repository=root, **POLL) as server:
        stub = v2_stub(server)
        moved = tmp_path / "moved"
        root.rename(moved)  # a repository mount that goes away for a moment: every poll fails
        time.sleep(0.5)
        moved.rename(root)
        add_version(root / "digits" / "1" / "model.onnx", root / "digits", 2)
        wait_for(lambda: ready(stub, "digits", "2"), "polling to pick up version 2 after the failed polls")


def test_a_poll_that_raises_an_unexpected_error_logs_it_and_polls_on(
    model_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_rescan = Repository.rescan
    raised: list[str] = []

    async def rescan_failing_once(self: Repository) -> None:
        if not raised:
            raised.append("once")
            raise RuntimeError("a bug in a rescan")
        await real_rescan(self)

    monkeypatch.setattr(Repository, "rescan", rescan_failing_once)
    root = fresh_repository(model_repository, tmp_path)
    with ServerThread(model_repository=root, **POLL) as server:
        stub = v2_stub(server)
        wait_for(lambda: bool(raised), "the first poll")
        add_version(root / "digits" / "1" / "model.onnx", root / "digits", 2)
        wait_for(lambda: ready(stub, "digits", "2"), "polling to pick up version 2 after the poll that raised")
    assert "repository poll failed" in caplog.text and "a bug in a rescan" in caplog.text


def test_a_stand_in_for_a_version_that_failed_to_load_is_the_newest_left(
    model_repository: Path, tmp_path: Path
) -> None:
    root = fresh_repository(model_repository, tmp_path)
    add_version(root / "digits" / "1" / "model.onnx", root / "digits", 2)
    (root / "digits" / "config.json").write_text(json.dumps({"version_policy": {"all": True}}))
    with ServerThread(model_repository=root, model_control_mode="explicit") as server:
        stub = v2_stub(server)
        broken = tmp_path / "broken.onnx"
        broken.write_bytes(b"not an onnx file")
        add_version(broken, root / "digits", 3)
        (root / "digits" / "config.json").write_text(json.dumps({"version_policy": {"latest": 1}}))
        with pytest.raises(grpc.RpcError) as caught:
            stub.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="digits"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert [ready(stub, "digits", str(v)) for v in (1, 2, 3)] == [False, True, False]
        assert index(stub)[("digits", "2")] == ("READY", "kept serving until a newer version loads")
        generator = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(server.target))
        assert generator.Generate(pb.GenerateRequest(model="digits", count=1, seed=1), timeout=30).version == 2
        (root / "digits" / "config.json").write_text(json.dumps({"version_policy": {"specific": [1, 3]}}))
        with pytest.raises(grpc.RpcError):  # version 3 still broken: 2 stands in, beside the older 1
            stub.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="digits"), timeout=30)
        assert [ready(stub, "digits", str(v)) for v in (1, 2, 3)] == [True, True, False]
        assert generator.Generate(pb.GenerateRequest(model="digits", count=1, seed=1), timeout=30).version == 2


def test_an_explicit_load_retries_a_version_whose_failure_came_from_outside_its_file(
    model_repository: Path, tmp_path: Path
) -> None:
    root = fresh_repository(model_repository, tmp_path)
    folder = root / "reader" / "1"
    folder.mkdir(parents=True)
    write_external_data_model(folder / "model.onnx", "weights.bin")  # its weights not copied yet
    with ServerThread(model_repository=root, model_control_mode="explicit", exit_on_error=False) as server:
        stub = v2_stub(server)
        assert index(stub)[("reader", "1")][0] == "UNAVAILABLE"
        np.array([1, 2, 3, 4], dtype=np.float32).tofile(folder / "weights.bin")  # model.onnx itself unchanged
        stub.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="reader"), timeout=30)
        assert ready(stub, "reader", "1") and index(stub)[("reader", "1")] == ("READY", "")


def test_while_a_new_copy_loads_the_old_one_serves_and_reads_ready(
    model_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fresh_repository(model_repository, tmp_path)
    with ServerThread(model_repository=root, model_control_mode="explicit") as server:
        repository = server.server.repository
        loading, release = threading.Event(), threading.Event()
        load_version = repository._load_version

        def slow_load(*args: object) -> ModelVersion:
            loading.set()
            release.wait(30)
            return load_version(*args)

        monkeypatch.setattr(repository, "_load_version", slow_load)
        stub = v2_stub(server)
        (root / "digits" / "config.json").write_text(json.dumps({"max_queue_size": 777}))  # a new copy of version 1
        load = stub.RepositoryModelLoad.future(v2.RepositoryModelLoadRequest(model_name="digits"), timeout=60)
        assert loading.wait(30)
        assert index(stub)[("digits", "1")] == ("READY", "") and stub.ServerReady(v2.ServerReadyRequest()).ready
        generator = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(server.target))
        assert generator.Generate(pb.GenerateRequest(model="digits", count=1, seed=1), timeout=30).version == 1
        release.set()
        load.result()
        assert repository.get("digits").config.max_queue_size == 777
