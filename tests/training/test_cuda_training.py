"""Training on a CUDA device: every trainer runs there, and what it writes resumes, loads and exports on a CPU.

These run only where torch sees a GPU; elsewhere (CI, these 2-core machines) they are skipped. On a GPU
machine, GAN_TEST_CUDA=1 turns a torch that sees no GPU into a failure.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, train_tiny
from tests.training.test_tabular import correlated_table, placements_table
from tests.training.test_translation import assert_resume_is_bit_for_bit, tiny
from training.checkpoint import load_checkpoint
from training.config import load_config
from training.data import DataError
from training.tabular.synthesizer import TabularConfig, load_synthesizer, train_table
from training.train import train
from training.translation.train import train_translation


@pytest.fixture(scope="module", autouse=True)
def cuda_only() -> None:
    if torch.cuda.is_available():
        return
    if os.environ.get("GAN_TEST_CUDA") == "1":
        pytest.fail("GAN_TEST_CUDA=1 but torch sees no CUDA device")
    pytest.skip("torch sees no CUDA device")


def saved_on(checkpoint: Path, part: str) -> set[str]:
    """The device types of a checkpoint's tensors in `part`, as saved (not mapped to the CPU)."""
    state = torch.load(checkpoint, weights_only=True)
    return {tensor.device.type for tensor in state[part].values()}


def export_without_a_gpu(checkpoint: Path, repository: Path, name: str) -> None:
    """gan-export in a process that sees no GPU, as on a CPU-only export or serving machine."""
    command = [sys.executable, "-c", "import sys; from export.cli import main; sys.exit(main(sys.argv[1:]))"]
    command += [str(checkpoint), "--repository", str(repository), "--name", name, "--parity-samples", "2"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (repository / name / "1" / "model.onnx").is_file()


def test_the_image_gan_trains_on_cuda_and_exports_on_a_machine_without_one(tmp_path: Path) -> None:
    checkpoint = train_tiny(tmp_path / "run", "device=cuda")
    assert saved_on(checkpoint, "generator") == {"cuda"}
    export_without_a_gpu(checkpoint, tmp_path / "models", "digits")


def test_an_image_run_moves_between_the_gpu_and_the_cpu_on_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_tiny(out, "device=cuda")
    for device, steps in (("cpu", 4), ("cuda", 6)):
        config = load_config(None, [*_tiny_image(out), f"steps={steps}", f"device={device}"])
        result = train(config, resume=out / "checkpoint.pt", progress=False)
        assert result.step == steps and all(math.isfinite(v) for v in result.losses.values())
        assert saved_on(result.checkpoint, "generator") == {device}
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 6


def _tiny_image(out: Path) -> list[str]:
    return [*TINY, f"out_dir={out}"]


def test_a_gpu_index_torch_does_not_see_is_refused_by_name(tmp_path: Path) -> None:
    count = torch.cuda.device_count()
    config = load_config(None, [*_tiny_image(tmp_path), f"device=cuda:{count}"])
    with pytest.raises(DataError, match=rf"device: cuda:{count} requested but torch sees {count} CUDA device"):
        train(config, progress=False)


def test_pix2pix_trains_on_cuda_like_on_the_cpu_and_exports_without_a_gpu(tmp_path: Path) -> None:
    runs = {}
    for device in ("cuda", "cpu"):
        config = tiny("colourisation", tmp_path / device, "steps=1", f"device={device}")
        runs[device] = train_translation(config, progress=False)
    assert saved_on(runs["cuda"].checkpoint, "generators") == {"cuda"}
    for name, value in runs["cpu"].losses.items():  # the same initial weights and batches on either device
        assert runs["cuda"].losses[name] == pytest.approx(value, rel=1e-2, abs=1e-4), name
    export_without_a_gpu(runs["cuda"].checkpoint, tmp_path / "models", "colourise")


@pytest.mark.parametrize("then", ["cuda", "cpu"])
def test_a_cyclegan_resumes_with_its_image_pools_on_either_device(tmp_path: Path, then: str) -> None:
    first = train_translation(tiny("unpaired", tmp_path, "steps=2", "device=cuda"), progress=False)
    assert torch.load(first.checkpoint, weights_only=True)["pools"]["a"].device.type == "cuda"
    resumed = train_translation(tiny("unpaired", tmp_path, "steps=4", f"device={then}"), resume=first.checkpoint)
    assert resumed.step == 4 and all(math.isfinite(v) for v in resumed.losses.values())
    pools = torch.load(resumed.checkpoint, weights_only=True)["pools"]
    assert {pool.device.type for pool in pools.values()} == {then} and all(len(p) == 3 for p in pools.values())


@pytest.mark.parametrize("task", ["inpainting", "unpaired"])
def test_a_deterministic_translation_run_resumes_bit_for_bit_on_cuda(task: str, tmp_path: Path) -> None:
    assert_resume_is_bit_for_bit(task, tmp_path, "device=cuda", "deterministic=true")


def test_a_deterministic_tabular_run_repeats_on_cuda() -> None:
    config = TabularConfig(steps=30, batch_size=100, device="cuda", deterministic=True)
    first, second = (train_table(correlated_table(300), config) for _ in range(2))
    weights = second.generator.state_dict()
    for name, tensor in first.generator.state_dict().items():
        assert torch.equal(tensor, weights[name]), name


def test_the_tabular_gan_trains_on_cuda_and_samples_and_exports_on_the_cpu(tmp_path: Path) -> None:
    synthesizer = train_table(correlated_table(300), TabularConfig(steps=30, batch_size=100, device="cuda"))
    assert {p.device.type for p in synthesizer.generator.parameters()} == {"cpu"}
    rows = synthesizer.sample(200, seed=3)
    model = tmp_path / "table.pt"
    synthesizer.save(model)
    assert load_synthesizer(model).sample(200, seed=3).equals(rows)
    export_without_a_gpu(model, tmp_path / "models", "table")


def test_the_tabular_gan_learns_on_cuda_what_it_learns_on_the_cpu() -> None:
    """The CPU test's bar (tests/training/test_tabular.py): salaries only for the placed students."""
    rows = train_table(placements_table(), TabularConfig(steps=600, seed=1, device="cuda")).sample(1000, seed=2)
    assert (rows["salary"].isna() == ~rows["placed"].astype(bool)).mean() > 0.85
    assert 0.55 < rows["placed"].mean() < 0.8


def test_gan_translate_trains_a_shipped_config_on_cuda(tmp_path: Path) -> None:
    from training.translation.cli import main

    config = Path(__file__).parents[2] / "training/configs/inpaint.yaml"
    arguments = ["train", "--config", str(config), "--no-progress", "device=cuda"]
    assert main([*arguments, "steps=2", "batch_size=2", f"out_dir={tmp_path / 'run'}"]) == 0
    assert saved_on(tmp_path / "run" / "checkpoint.pt", "generators") == {"cuda"}
