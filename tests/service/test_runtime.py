"""Provider choice and the CPU fallback (no GPU here: the CUDA path is checked as configuration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import ModelLoadError
from service.runtime import CPU, CUDA, TENSORRT, choose_providers, load_runtime
from service.settings import load_settings
from tests.service.onnx_models import write_custom_op_model, write_doubler

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


def test_a_model_with_a_custom_operator_is_refused_not_given_a_library(tmp_path: Path) -> None:
    path = write_custom_op_model(tmp_path / "custom" / "1" / "model.onnx")
    with pytest.raises(ModelLoadError, match=r"custom.*onnxruntime cannot load it.*Backdoor"):
        load_runtime(path, load_settings(provider="cpu"))
