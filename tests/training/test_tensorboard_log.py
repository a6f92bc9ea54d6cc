"""TensorBoard: the logged scalars and the sample grids, read back from the event files."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import TINY
from training.config import ConfigError, load_config
from training.train import train


def run(out_dir: Path, *extra: str, resume: Path | None = None) -> None:
    overrides = [*TINY, "steps=4", "log_every=1", "sample_every=2", "tensorboard=true", f"out_dir={out_dir}"]
    train(load_config(None, [*overrides, *extra]), resume=resume, progress=False)


def events(out_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(out_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_scalars_and_sample_grids_are_in_the_event_file(tmp_path: Path) -> None:
    run(tmp_path)
    board = events(tmp_path)
    assert {"d_loss", "g_loss", "d_real", "d_fake", "lr_g", "lr_d"} <= set(board.Tags()["scalars"])
    rows = list(csv.DictReader((tmp_path / "losses.csv").open()))
    for name in ("d_loss", "g_loss", "d_real", "d_fake"):
        logged = board.Scalars(name)
        assert [event.step for event in logged] == [1, 2, 3, 4]
        assert [event.value for event in logged] == pytest.approx([float(row[name]) for row in rows], abs=1e-6)
    assert [event.value for event in board.Scalars("lr_g")] == pytest.approx([2e-4] * 4)
    grids = board.Images("samples")
    assert [event.step for event in grids] == [2, 4]
    on_disk = Image.open(tmp_path / "samples/step_000004.png")
    assert (grids[-1].width, grids[-1].height) == on_disk.size


def test_resume_continues_the_curves_without_repeating_steps(tmp_path: Path) -> None:
    run(tmp_path, "steps=2")
    step_2 = tmp_path / "step_2.pt"
    shutil.copy(tmp_path / "checkpoint.pt", step_2)
    run(tmp_path, resume=step_2)
    run(tmp_path, resume=step_2)  # again from step 2: the events of steps 3 and 4 written since are dropped
    assert [event.step for event in events(tmp_path).Scalars("g_loss")] == [1, 2, 3, 4]


def test_asking_for_tensorboard_without_the_package_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(ConfigError, match=r"pip install .*or set tensorboard=false"):
        run(tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()
