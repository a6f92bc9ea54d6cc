"""A few real training steps on CPU: finite losses, outputs on disk, exact resume."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import TINY, modes, umask
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


@pytest.mark.parametrize("nan_step", [3, 4], ids=["between checkpoints", "at a checkpoint step"])
def test_nan_loss_stops_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nan_step: int
) -> None:
    import training.train as loop

    real_step = loop.train_step
    calls = {"n": 0}

    def diverging_step(*args, **kwargs):  # type: ignore[no-untyped-def]
        losses = real_step(*args, **kwargs)
        calls["n"] += 1
        return {**losses, "d_loss": float("nan")} if calls["n"] == nan_step else losses

    monkeypatch.setattr(loop, "train_step", diverging_step)
    with pytest.raises(TrainingDiverged, match=r"not finite.*last good checkpoint"):
        train(tiny(tmp_path, "steps=4", "checkpoint_every=2"), progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2


def test_weights_gone_nan_after_a_finite_loss_are_never_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.train as loop

    real_step = loop.train_step
    calls = {"n": 0}

    def poisoning_step(run, *args, **kwargs):  # type: ignore[no-untyped-def]
        losses = real_step(run, *args, **kwargs)  # finite: the update after it breaks the weights
        calls["n"] += 1
        if calls["n"] == 4:
            with torch.no_grad():
                next(run.generator.parameters()).fill_(float("nan"))
        return losses

    monkeypatch.setattr(loop, "train_step", poisoning_step)
    with pytest.raises(TrainingDiverged, match=r"step 4: the weights of generator.*last good checkpoint"):
        train(tiny(tmp_path, "steps=6", "checkpoint_every=2", "optim.ema_decay=0"), progress=False)
    kept = load_checkpoint(tmp_path / "checkpoint.pt")
    assert kept["step"] == 2 and all(torch.isfinite(t).all() for t in kept["generator"].values())


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


def cli(out_dir: Path, *extra: str) -> list[str]:
    return ["--no-progress", *TINY, f"out_dir={out_dir}", *extra]


def test_resume_alone_continues_the_recorded_run(tmp_path: Path) -> None:
    """`gan-train --resume CKPT steps=N` keeps the run's own settings, not the defaults."""
    from training.cli import main

    recorded = ["optim.loss=lsgan", "optim.lr_g=1e-3", "optim.diffaugment=color"]
    assert main(cli(tmp_path / "straight", "steps=4", *recorded)) == 0
    assert main(cli(tmp_path / "split", "steps=2", *recorded)) == 0
    assert main(["--no-progress", "--resume", str(tmp_path / "split/checkpoint.pt"), "steps=4"]) == 0
    a, b = load_checkpoint(tmp_path / "straight/checkpoint.pt"), load_checkpoint(tmp_path / "split/checkpoint.pt")
    assert b["step"] == 4 and b["config"]["optim"]["loss"] == "lsgan" and b["config"]["model"]["width"] == 8
    for part in ("generator", "discriminator", "ema_generator"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs after resume"


@pytest.fixture(scope="module")
def without_ema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(tiny(tmp_path_factory.mktemp("no-ema"), "optim.ema_decay=0"), progress=False).checkpoint


@pytest.mark.parametrize(
    ("ema", "change", "field"),
    [
        (True, "model.width=16", "model.width"),
        (True, "optim.loss=hinge", "optim.loss"),
        (True, "data.conditional=false", "data.conditional"),
        (True, "optim.ema_decay=0", "optim.ema_decay"),
        (False, "optim.ema_decay=0.999", "optim.ema_decay"),
    ],
)
def test_resume_refuses_what_would_change_the_networks(
    checkpoints: dict[str, Path],
    without_ema: Path,
    capsys: pytest.CaptureFixture[str],
    ema: bool,
    change: str,
    field: str,
) -> None:
    from training.cli import main

    checkpoint = checkpoints["conditional"] if ema else without_ema
    before = checkpoint.read_bytes()
    assert main(["--no-progress", "--resume", str(checkpoint), "steps=4", change]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gan-train: error: resuming") and field in err and "Traceback" not in err
    assert checkpoint.read_bytes() == before, "a refused resume must not touch the run"


def test_resume_through_the_api_refuses_another_network(tmp_path: Path) -> None:
    from training.config import ConfigError

    checkpoint = train(tiny(tmp_path), progress=False).checkpoint
    with pytest.raises(ConfigError, match=r"model\.width: the run was trained with 8, not 16"):
        train(tiny(tmp_path, "model.width=16", "steps=4"), resume=checkpoint, progress=False)


def test_resume_may_lower_the_learning_rates_and_train_longer(tmp_path: Path) -> None:
    from training.cli import main

    assert main(cli(tmp_path)) == 0
    overrides = ["steps=3", "optim.lr_g=1e-5", "optim.lr_d=1e-5", "log_every=1"]
    assert main(["--no-progress", "--resume", str(tmp_path / "checkpoint.pt"), *overrides]) == 0
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 3 and state["config"]["optim"]["lr_g"] == 1e-5
    assert all(group["lr"] == 1e-5 for group in state["optimizer_g"]["param_groups"])


def test_weights_that_do_not_fit_are_a_checkpoint_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint whose weights disagree with its recorded config is refused in one line, not a traceback."""
    from training.checkpoint import save_checkpoint
    from training.cli import main

    checkpoint = train(tiny(tmp_path), progress=False).checkpoint
    state = load_checkpoint(checkpoint)
    state["config"]["model"]["width"] = 16  # the weights are width 8
    save_checkpoint(checkpoint, {key: value for key, value in state.items() if key != "format"})
    assert main(["--no-progress", "--resume", str(checkpoint), "steps=4"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt: its weights do not fit" in err and "size mismatch" in err and "Traceback" not in err


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_the_checkpoint_is_as_readable_as_any_file_the_run_writes(tmp_path: Path, mask: int) -> None:
    """Not mkstemp's 0600: a server or evaluator running as another user must be able to read it."""
    with umask(mask):
        checkpoint = train(tiny(tmp_path), progress=False).checkpoint
    assert modes(checkpoint, tmp_path / "losses.csv") == {"checkpoint.pt": 0o666 & ~mask, "losses.csv": 0o666 & ~mask}
