"""The speed options: torch.compile (checked on CPU here) and bfloat16 mixed precision (CUDA only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import TINY
from training.acceleration import autocast
from training.config import ConfigError, load_config
from training.data import DataError
from training.train import train


def test_a_compiled_run_learns_the_same_as_an_eager_one(tmp_path: Path) -> None:
    overrides = [*TINY, "steps=3", "model.d_batch_norm=false"]
    eager = train(load_config(None, [*overrides, f"out_dir={tmp_path / 'eager'}"]), progress=False)
    compiled_config = load_config(None, [*overrides, "compile=true", f"out_dir={tmp_path / 'compiled'}"])
    compiled = train(compiled_config, progress=False)
    for name, value in eager.losses.items():
        assert compiled.losses[name] == pytest.approx(value, rel=1e-3, abs=1e-4), name
    state = torch.load(compiled.checkpoint, weights_only=True)
    assert not any(key.startswith("_orig_mod") for key in state["generator"])  # checkpoints hold the plain modules


def test_compile_with_a_double_backward_penalty_is_refused() -> None:
    with pytest.raises(ConfigError, match="differentiate twice"):
        load_config(None, ["compile=true", "optim.r1_gamma=1", "model.d_batch_norm=false"])


def test_mixed_precision_on_the_cpu_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="amp=bf16: mixed precision is for CUDA"):
        train(load_config(None, [*TINY, "amp=bf16", "device=cpu", f"out_dir={tmp_path}"]), progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_amp_off_on_the_command_line_is_not_read_as_false() -> None:
    assert load_config(None, ["amp=off"]).amp == "off"  # YAML would read a bare off as false


def test_bf16_autocast_runs_matrix_products_in_bfloat16() -> None:
    config = load_config(None, ["amp=bf16"])
    with autocast(config, torch.device("cpu")):
        product = torch.ones(4, 4) @ torch.ones(4, 4)
    assert product.dtype == torch.bfloat16
    with autocast(load_config(None, []), torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
