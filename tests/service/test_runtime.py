"""Provider choice and the CPU fallback (no GPU here: the CUDA path is checked as configuration)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from service import runtime as runtime_module
from service.errors import ModelLoadError
from service.runtime import CPU, CUDA, TENSORRT, choose_providers, load_runtime, session_threads
from service.settings import load_settings
from tests.service.onnx_models import write_custom_op_model, write_doubler, write_external_data_model

GPU_BUILD = [TENSORRT, CUDA, CPU]


def test_auto_uses_cuda_with_the_configured_options_when_the_build_has_it() -> None:
    settings = load_settings(cuda_device_id=1, cuda_mem_limit_gib=2, cuda_conv_algo_search="EXHAUSTIVE")
    choice = choose_providers(settings, available=GPU_BUILD)
    (name, options), cpu = choice.providers
    assert (name, cpu) == (CUDA, CPU) and choice.fallback_reason == ""
    assert options["device_id"] == 1 and options["gpu_mem_limit"] == 2 * 1024**3
    assert options["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert options["arena_extend_strategy"] == "kNextPowerOfTwo"


def test_tensorrt_comes_first_then_cuda_then_cpu(tmp_path: Path) -> None:
    settings = load_settings(provider="tensorrt", tensorrt_fp16=True, tensorrt_cache_dir=tmp_path)
    providers = choose_providers(settings, available=GPU_BUILD).providers
    assert [p[0] if isinstance(p, tuple) else p for p in providers] == [TENSORRT, CUDA, CPU]
    trt_options = providers[0][1]  # type: ignore[index]
    assert trt_options["trt_fp16_enable"] and trt_options["trt_engine_cache_path"] == str(tmp_path)


def test_auto_falls_back_to_cpu_and_says_why() -> None:
    choice = choose_providers(load_settings(), available=[CPU])
    assert choice.providers == [CPU] and CUDA in choice.fallback_reason


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_an_explicit_gpu_provider_without_gpu_support_is_an_error_naming_the_setting(provider: str) -> None:
    with pytest.raises(ModelLoadError, match="GAN_PROVIDER"):
        choose_providers(load_settings(provider=provider), available=[CPU])


def test_cpu_is_cpu_whatever_the_build() -> None:
    assert choose_providers(load_settings(provider="cpu"), available=GPU_BUILD).providers == [CPU]


def test_on_this_machine_auto_runs_on_cpu_and_records_the_reason(tmp_path: Path) -> None:
    runtime = load_runtime(write_doubler(tmp_path / "m.onnx"), load_settings(intra_op_threads=1), instances=2)
    if runtime.provider == CUDA:
        pytest.skip("this machine has a working CUDA provider")
    assert runtime.provider == CPU and runtime.fallback_reason
    assert len(runtime.sessions) == 2 and runtime.batched and runtime.signature is None


@pytest.mark.parametrize(
    ("cores", "workers", "instances", "threads"),
    [
        (16, 1, 1, 15),
        (16, 1, 2, 7),
        (16, 4, 1, 3),
        (4, 1, 1, 3),
        (3, 1, 1, 3),  # below 4 cores a worker, no core is set aside
        (2, 1, 1, 2),
        (2, 1, 2, 1),
        (2, 2, 1, 1),
        (1, 1, 1, 1),
        (2, 4, 1, 1),  # more workers than cores
    ],
)
def test_default_threads_leave_each_event_loop_a_core_from_4_cores_and_share_the_rest(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int, instances: int, threads: int
) -> None:
    monkeypatch.setattr(runtime_module.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(runtime_module, "CGROUP_CPU_MAX", Path("/nonexistent/cpu.max"))  # no container limit
    monkeypatch.setattr(runtime_module, "CGROUP_V1_CPU", Path("/nonexistent/cpu"))
    settings = load_settings(workers=workers, intra_op_threads=0)
    assert session_threads(settings, None, instances) == threads
    assert session_threads(settings, 0, instances) == threads  # config.json's 0 too


@pytest.mark.parametrize(
    ("cpu_max", "cores"),
    [("600000 100000", 6), ("550000 100000", 6), ("50000 100000", 1), ("max 100000", 16), ("", 16), ("2 0", 16)],
)
def test_a_container_cpu_limit_caps_the_cores_the_default_shares(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpu_max: str, cores: int
) -> None:
    monkeypatch.setattr(runtime_module.os, "sched_getaffinity", lambda pid: set(range(16)))
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    monkeypatch.setattr(runtime_module, "CGROUP_CPU_MAX", tmp_path / "cpu.max")
    assert runtime_module.usable_cores() == cores
    assert session_threads(load_settings(workers=1, intra_op_threads=0), None) == (cores - 1 if cores >= 4 else 1)


@pytest.mark.parametrize(("quota", "cores"), [("300000", 3), ("-1", 16)])
def test_a_cgroup_v1_cpu_limit_counts_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, quota: str, cores: int
) -> None:
    monkeypatch.setattr(runtime_module.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(runtime_module, "CGROUP_CPU_MAX", tmp_path / "absent")
    (tmp_path / "cpu.cfs_quota_us").write_text(quota + "\n")
    (tmp_path / "cpu.cfs_period_us").write_text("100000\n")
    monkeypatch.setattr(runtime_module, "CGROUP_V1_CPU", tmp_path)
    assert runtime_module.usable_cores() == cores


def test_configured_threads_win_over_the_default() -> None:
    settings = load_settings(workers=1, intra_op_threads=4)
    assert session_threads(settings, None, 2) == 4  # GAN_INTRA_OP_THREADS
    assert session_threads(settings, 2, 2) == 2  # the model's config.json first


def test_a_model_with_a_custom_operator_is_refused_not_given_a_library(tmp_path: Path) -> None:
    path = write_custom_op_model(tmp_path / "custom" / "1" / "model.onnx")
    with pytest.raises(ModelLoadError, match=r"custom.*onnxruntime cannot load it.*Backdoor"):
        load_runtime(path, load_settings(provider="cpu"))


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_a_model_cannot_read_files_outside_its_folder_as_external_data(tmp_path: Path, where: str) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"SECRET-KEY-BYTES")
    folder = tmp_path / "models" / "reader" / "1"
    folder.mkdir(parents=True)
    (folder / "link.bin").symlink_to(secret)
    location = {"parent": "../../../secret.bin", "absolute": str(secret), "symlink": "link.bin"}[where]
    path = write_external_data_model(folder / "model.onnx", location)
    with pytest.raises(ModelLoadError, match=r"onnxruntime cannot load it.*External data path"):
        load_runtime(path, load_settings(provider="cpu"))


def test_a_model_reads_external_data_inside_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "reader" / "1"
    folder.mkdir(parents=True)
    np.array([1, 2, 3, 4], dtype=np.float32).tofile(folder / "weights.bin")
    path = write_external_data_model(folder / "model.onnx", "weights.bin")
    runtime = load_runtime(path, load_settings(provider="cpu"))
    assert runtime.sessions[0].run({"x": np.zeros((1, 4), np.float32)})["y"].tolist() == [[1, 2, 3, 4]]


def test_a_translator_is_detected_and_its_graph_checked(tmp_path: Path) -> None:
    from service.translator_signature import TranslatorSignature
    from tests.service.onnx_models import write_translator

    runtime = load_runtime(write_translator(tmp_path / "sr.onnx", "gray", scale=2), load_settings(provider="cpu"))
    assert runtime.translator is not None and runtime.translator.input_channels == 1 and runtime.batched
    path = write_doubler(tmp_path / "liar.onnx")  # x/y tensors, but metadata claiming a translator
    model = onnx.load(str(path))
    signature = TranslatorSignature("t", "a", "rgb", 3, 1, 1, (8, 8), (-1.0, 1.0), "")
    for key, value in signature.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match=r"liar.onnx.*gan.translator.*'source'"):
        load_runtime(path, load_settings(provider="cpu"))


def test_warm_up_runs_a_translator_at_its_train_size(tmp_path: Path) -> None:
    """A graph that only works at 8x8 (a Reshape to (N, 3, 8, 8)) loads: warm-up does not run it at 1x1."""
    from onnx import TensorProto, helper

    from service.batcher import BatchPolicy
    from service.repository import warm_up
    from service.translator_signature import TranslatorSignature

    source = helper.make_tensor_value_info("source", TensorProto.FLOAT, ["N", 3, "H", "W"])
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 3, 8, 8])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["source", "shape"], ["image"])], "g", [source], [image], [shape]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    for key, value in TranslatorSignature("t", "a", "rgb", 3, 1, 8, (8, 8), (-1.0, 1.0), "").to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(tmp_path / "m.onnx"))
    runtime = load_runtime(tmp_path / "m.onnx", load_settings(provider="cpu"))
    warm_up(runtime, BatchPolicy(max_batch_size=4, max_queue_delay_s=0.0, max_queue_size=8))


def recording(run: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]], sizes: list[int]) -> Any:
    """`run`, appending the batch size of each call to `sizes`."""

    def run_and_record(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        sizes.append(len(feeds["x"]))
        return run(feeds)

    return run_and_record


@pytest.mark.parametrize(
    ("allowed", "warmed"), [((1, 4, 8), [1, 4, 8]), ((), [1, 8])], ids=["allowed sizes", "up to max_batch_size"]
)
def test_warm_up_runs_every_batch_size_a_request_may_run_at_on_every_instance(
    tmp_path: Path, allowed: tuple[int, ...], warmed: list[int]
) -> None:
    """No request pays for a cold shape: each instance has run each size before the model is ready."""
    from service.batcher import BatchPolicy
    from service.repository import warm_up

    runtime = load_runtime(write_doubler(tmp_path / "m.onnx"), load_settings(provider="cpu"), instances=2)
    runs: list[list[int]] = [[], []]  # per instance: the batch size of each run
    for session, sizes in zip(runtime.sessions, runs, strict=True):
        session.run = recording(session.run, sizes)  # type: ignore[method-assign]
    policy = BatchPolicy(max_batch_size=8, max_queue_delay_s=0.0, max_queue_size=8, allowed_batch_sizes=allowed)
    warm_up(runtime, policy)
    assert runs == [warmed, warmed]
