"""A few real training steps on CPU: finite losses, outputs on disk, exact resume."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import TINY
from training.checkpoint import CheckpointError, load_checkpoint, load_generator
from training.config import load_config
from training.train import TrainingDiverged, train


def tiny(out_dir: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(None, [*TINY, f"out_dir={out_dir}", *extra])


def test_steps_give_finite_losses_and_write_outputs(tmp_path: Path) -> None:
    result = train(tiny(tmp_path, "steps=4", "log_every=1", "sample_every=2"), progress=False)
    assert result.step == 4 and all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())
    rows = list(csv.DictReader((tmp_path / "losses.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    curves = Image.open(tmp_path / "losses.png").convert("RGB")
    colours = {colour for _, colour in curves.getcolors(maxcolors=100_000) or []}
    assert (200, 40, 40) in colours and (40, 90, 200) in colours  # both loss curves are drawn
    grid = Image.open(tmp_path / "samples/step_000004.png")
    assert grid.width > 8 * 16  # 8 columns of 16 px samples, one row per class
    state = load_checkpoint(result.checkpoint)
    for key in ("generator", "discriminator", "ema_generator", "optimizer_g", "optimizer_d", "rng", "config"):
        assert key in state
    assert state["step"] == 4 and state["class_names"] == [str(d) for d in range(10)]


def test_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = train(tiny(tmp_path / "straight", "steps=6"), progress=False)
    train(tiny(tmp_path / "split", "steps=3"), progress=False)
    resumed = train(tiny(tmp_path / "split", "steps=6"), resume=tmp_path / "split/checkpoint.pt", progress=False)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for part in ("generator", "discriminator", "ema_generator"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs after resume"
    assert straight.losses == resumed.losses
    steps = [int(r["step"]) for r in csv.DictReader((tmp_path / "split/losses.csv").open())]
    assert steps == sorted(set(steps)), "resume must not duplicate loss rows"


def test_load_generator_makes_images_in_range(checkpoints: dict[str, Path]) -> None:
    loaded = load_generator(checkpoints["conditional"])
    assert not loaded.generator.training and loaded.latent_dim == 8 and loaded.image_size == 16
    with torch.no_grad():
        images = loaded.generator(torch.randn(5, 8), torch.arange(5))
    assert images.shape == (5, 1, 16, 16) and images.min() >= -1 and images.max() <= 1


def test_truncated_checkpoint_is_refused(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    data = checkpoints["conditional"].read_bytes()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"broken\.pt"):
        load_generator(broken)


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.train as loop

    real_step = loop.train_step
    calls = {"n": 0}

    def diverging_step(*args, **kwargs):  # type: ignore[no-untyped-def]
        losses = real_step(*args, **kwargs)
        calls["n"] += 1
        return {**losses, "d_loss": float("nan")} if calls["n"] == 3 else losses

    monkeypatch.setattr(loop, "train_step", diverging_step)
    with pytest.raises(TrainingDiverged, match=r"not finite.*last good checkpoint"):
        train(tiny(tmp_path, "steps=4", "checkpoint_every=2"), progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2


def test_a_kill_at_any_moment_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    """SIGKILL a run that checkpoints every step, at several moments: what is on disk always loads."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    overrides = [*TINY, "steps=100000", "checkpoint_every=1", f"out_dir={out}"]
    command = [sys.executable, "-m", "training.cli", "--no-progress", *overrides]
    checkpoint = out / "checkpoint.pt"
    steps = []
    for delay in (0.0, 0.13, 0.37):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        steps.append(load_checkpoint(checkpoint)["step"])  # raises if half-written
        checkpoint.unlink()
    assert all(step >= 1 for step in steps)
