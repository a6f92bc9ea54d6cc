"""Deterministic mode: the same seed gives the same weights, bit for bit; off, the switches are back."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.conftest import TINY
from tests.training.ddp_worker import state_digest
from training.checkpoint import load_checkpoint
from training.config import load_config
from training.train import train


def weights(out_dir: Path, *extra: str) -> str:
    config = load_config(None, [*TINY, "steps=3", "optim.diffaugment=color,translation", f"out_dir={out_dir}", *extra])
    state = load_checkpoint(train(config, progress=False).checkpoint)
    return state_digest(state["generator"], state["discriminator"], state["ema_generator"])


def test_two_deterministic_runs_with_one_seed_give_identical_weights(tmp_path: Path) -> None:
    first = weights(tmp_path / "first", "deterministic=true")
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert weights(tmp_path / "second", "deterministic=true") == first
    assert weights(tmp_path / "other_seed", "deterministic=true", "seed=1") != first


def test_deterministic_off_restores_the_default_switches(tmp_path: Path) -> None:
    weights(tmp_path / "on", "deterministic=true")
    weights(tmp_path / "off")
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    assert not torch.backends.cudnn.benchmark  # benchmark is for CUDA runs only
