"""2-D point data (Ring-8, Grid-25) with the MLP models, and the learning-rate schedules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from training.checkpoint import CheckpointError, load_checkpoint, load_generator
from training.config import ConfigError, load_config
from training.models import pack
from training.train import learning_rate_scale, train

POINTS = [
    "data.source=ring8",
    "data.conditional=false",
    "data.points=2000",
    "model.arch=mlp",
    "model.width=16",
    "model.depth=2",
    "model.latent_dim=4",
    "batch_size=32",
    "sample_every=1000",
    "checkpoint_every=1000",
]


def points_config(out_dir: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(None, [*POINTS, f"out_dir={out_dir}", *extra])


def test_ring8_run_draws_the_samples_over_the_modes_and_scores_them(tmp_path: Path) -> None:
    result = train(points_config(tmp_path, "steps=20", "sample_every=20"), progress=False)
    picture = Image.open(tmp_path / "samples/step_000020.png").convert("RGB")
    colours = {colour for _, colour in picture.getcolors(maxcolors=1_000_000) or []}
    assert (255, 0, 0) in colours or (0, 128, 0) in colours  # the samples are drawn, red or green
    score = json.loads((tmp_path / "samples/step_000020.json").read_text())
    assert score["mixture"] == "ring8" and score["samples"] == 2500 and score["modes"] == 8
    loaded = load_generator(result.checkpoint)
    with torch.no_grad():
        points = loaded.generator(torch.randn(7, 4), torch.zeros(7, dtype=torch.int64))
    assert points.shape == (7, 2) and torch.isfinite(points).all()


def test_resume_with_a_decaying_learning_rate_matches_a_straight_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = ["steps=6", "checkpoint_every=3", "optim.lr_decay=linear", "optim.lr_floor=0.1", "model.pack=2"]
    straight = train(points_config(tmp_path / "straight", *extra), progress=False)

    def stop_after_step_3(losses: dict[str, float], step: int, checkpoint: Path) -> None:
        if step == 3:
            raise KeyboardInterrupt  # the run is killed after its step-3 checkpoint

    interrupted = points_config(tmp_path / "interrupted", *extra)
    with monkeypatch.context() as patch:
        patch.setattr("training.train.check_finite", stop_after_step_3)
        with pytest.raises(KeyboardInterrupt):
            train(interrupted, progress=False)
    checkpoint = tmp_path / "interrupted/checkpoint.pt"
    assert load_checkpoint(checkpoint)["step"] == 3
    resumed = train(interrupted, resume=checkpoint, progress=False)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for part in ("generator", "discriminator"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs after resume"
    assert b["optimizer_g"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.1)  # the floor at the last step


def test_linear_and_cosine_decay_fall_to_the_floor_at_the_last_step() -> None:
    for kind in ("linear", "cosine"):
        config = load_config(None, [f"optim.lr_decay={kind}", "optim.lr_floor=0.05", "steps=101"])
        assert learning_rate_scale(config, 0) == pytest.approx(1.0)
        assert learning_rate_scale(config, 100) == pytest.approx(0.05)
        assert 0.05 < learning_rate_scale(config, 50) < 1.0
    assert learning_rate_scale(load_config(None, ["steps=10"]), 9) == 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.arch=mlp"], "mlp is for 2-D points"),
        (["data.source=ring8", "data.conditional=false"], "need model.arch=mlp"),
        (["data.source=grid25", "model.arch=mlp"], "data.conditional=false"),
        ([*POINTS, "optim.diffaugment=color"], "DiffAugment transforms images"),
    ],
)
def test_point_configs_that_cannot_work_are_refused_with_the_fix(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_pack_concatenates_consecutive_points() -> None:
    points = torch.arange(12.0).reshape(6, 2)
    assert pack(points, 3).tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]


def test_a_point_generator_is_not_exported(tmp_path: Path) -> None:
    from export.cli import export_checkpoint

    result = train(points_config(tmp_path / "run", "steps=1"), progress=False)
    with pytest.raises(CheckpointError, match="gan-eval modes"):
        export_checkpoint(result.checkpoint, tmp_path / "models", "ring")
    assert not (tmp_path / "models" / "ring").exists()


def test_the_discriminator_width_is_set_on_its_own() -> None:
    from training.models import build_discriminator, build_generator

    config = load_config(None, ["model.width=8", "model.d_width=24"])
    first_conv = next(m for m in build_discriminator(config, 10).modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.out_channels == 24
    assert any(m.out_channels == 8 for m in build_generator(config, 10).modules() if hasattr(m, "out_channels"))
    mlp = load_config(None, [*POINTS, "model.d_width=40", "model.d_depth=3"])
    layers = [m for m in build_discriminator(mlp, 0).modules() if isinstance(m, torch.nn.Linear)]
    assert [layer.out_features for layer in layers] == [40, 40, 40, 1]


def test_maxout_discriminator_units_take_the_largest_of_their_pieces(tmp_path: Path) -> None:
    from training.models import Maxout, build_discriminator

    config = load_config(
        None,
        [
            *POINTS,
            "model.d_width=6",
            "model.d_depth=2",
            "model.d_maxout=5",
            "model.pack=4",
            "model.minibatch_std=false",
        ],
    )
    critic = build_discriminator(config, 0)
    units = [m for m in critic.modules() if isinstance(m, Maxout)]
    assert [(unit.linear.in_features, unit.linear.out_features) for unit in units] == [(8, 30), (6, 30)]
    assert not any(isinstance(m, torch.nn.LeakyReLU) for m in critic.modules())
    unit = units[0]
    points = torch.randn(3, 8)
    pieces = unit.linear(points).view(3, 6, 5)
    assert torch.equal(unit(points), pieces.max(dim=2).values)
    assert critic(points, torch.zeros(3)).shape == (3,)
    train(points_config(tmp_path, "steps=4", "model.d_maxout=5", "model.pack=4"), progress=False)  # trains
    with pytest.raises(ConfigError, match=r"model\.d_maxout"):
        load_config(None, ["model.d_maxout=5"])  # DCGAN images: maxout is the MLP discriminator's
