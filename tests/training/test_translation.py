"""gan-translate: pix2pix and CycleGAN train, resume bit for bit, make the right data, and say what is wrong."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.checkpoint import CheckpointError
from training.config import ConfigError
from training.train import TrainingDiverged
from training.translation import train as train_module
from training.translation.checkpoint import load_translation_checkpoint, load_translator
from training.translation.cli import main, translation_config
from training.translation.config import TranslationConfig, translation_digest
from training.translation.data import (
    digits_domains,
    downscale,
    grid_patches,
    load_paired,
    make_sources,
    random_crops,
    random_holes,
    split_columns,
    split_files,
)
from training.translation.evaluate import evaluate_translation, improved, plain_baseline
from training.translation.metrics import PSNR_CAP, psnr, ssim
from training.translation.train import train_translation

# On the CPU on any machine, where runs repeat bit for bit (tests/training/test_cuda_training.py covers GPUs)
TINY_PAIRED = [
    "device=cpu",
    "steps=3",
    "batch_size=2",
    "data.patch_size=16",
    "model.width=4",
    "model.depth=2",
    "model.d_width=4",
]
TINY_UNPAIRED = ["device=cpu", "task=unpaired", "steps=3", "batch_size=2", "data.patch_size=16", "data.channels=1"]
TINY_UNPAIRED += ["model.width=4", "model.blocks=1", "model.d_width=4", "optim.pool_size=3", "domains=[digits,bold]"]


def tiny(task: str, out_dir: Path, *extra: str) -> TranslationConfig:
    base = TINY_PAIRED if task != "unpaired" else TINY_UNPAIRED
    return translation_config(None, [f"task={task}", *base, f"out_dir={out_dir}", *extra])


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # the machine's cores are shared; tiny models gain nothing from more


@pytest.mark.parametrize("task", ["super-resolution", "inpainting", "colourisation", "unpaired"])
def test_a_few_real_steps_give_finite_losses_a_checkpoint_and_pictures(task: str, tmp_path: Path) -> None:
    config = tiny(task, tmp_path, "sample_every=3")
    result = train_translation(config, progress=False)
    assert result.step == 3 and all(math.isfinite(value) for value in result.losses.values())
    assert (tmp_path / "samples/step_000003.png").is_file()
    rows = (tmp_path / "losses.csv").read_text().splitlines()
    assert rows[0].startswith("step,d_loss,g_adv") and rows[-1].startswith("3,")
    loaded = load_translator(result.checkpoint)
    source = torch.zeros(1, {"rgb": 3, "gray": 1, "rgb+mask": 4}[config.input_format], 8, 8)
    image = loaded.generator(source)
    assert image.shape == (1, config.output_channels, 8 * config.scale, 8 * config.scale)
    assert image.abs().max() <= 1.0


def _tensors(state: object) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for key in sorted(state, key=str) for t in _tensors(state[key])]
    if isinstance(state, list | tuple):
        return [t for item in state for t in _tensors(item)]
    return []


@pytest.mark.parametrize("task", ["inpainting", "unpaired"])
def test_a_resumed_run_is_bit_for_bit_the_uninterrupted_one(task: str, tmp_path: Path) -> None:
    assert_resume_is_bit_for_bit(task, tmp_path)


def assert_resume_is_bit_for_bit(task: str, tmp_path: Path, *extra: str) -> None:
    """Two steps, then two more from the checkpoint, end exactly where four straight steps do."""
    every = ["checkpoint_every=2", "log_every=1", "optim.decay_from=0.5", *extra]  # the schedule resumes too
    straight = train_translation(tiny(task, tmp_path / "straight", "steps=4", *every), progress=False)
    half = train_translation(tiny(task, tmp_path / "resumed", "steps=2", *every), progress=False)
    resumed = train_translation(
        tiny(task, tmp_path / "resumed", "steps=4", *every), resume=half.checkpoint, progress=False
    )
    assert resumed.losses == straight.losses
    a, b = load_translation_checkpoint(straight.checkpoint), load_translation_checkpoint(resumed.checkpoint)
    for key in ("generators", "discriminators", "ema", "optimizer_g", "optimizer_d", "pools", "rng"):
        left, right = _tensors(a[key]), _tensors(b[key])
        assert len(left) == len(right) and all(torch.equal(x, y) for x, y in zip(left, right, strict=True)), key
    assert (tmp_path / "resumed/losses.csv").read_text() == (tmp_path / "straight/losses.csv").read_text()


def test_resume_refuses_a_checkpoint_that_does_not_fit_the_config(tmp_path: Path) -> None:
    """A moving average switched on at resume would start from the initial weights; other networks cannot load."""
    first = train_translation(tiny("unpaired", tmp_path, "steps=2", "optim.ema_decay=0"), progress=False)
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: does not fit.*moving average.*optim.ema_decay"):
        train_translation(tiny("unpaired", tmp_path, "steps=3"), resume=first.checkpoint, progress=False)
    wider = tiny("unpaired", tmp_path, "steps=3", "optim.ema_decay=0", "model.width=8")
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: does not fit.*size mismatch"):
        train_translation(wider, resume=first.checkpoint, progress=False)
    assert load_translation_checkpoint(first.checkpoint)["step"] == 2, "a refused resume leaves the checkpoint alone"


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = train_module.paired_step
    calls = {"n": 0}

    def poisoned(*args: object) -> dict[str, float]:
        calls["n"] += 1
        losses = real_step(*args)  # type: ignore[arg-type]
        return {**losses, "l1": float("nan")} if calls["n"] == 3 else losses

    monkeypatch.setattr(train_module, "paired_step", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 3.*last good checkpoint"):
        train_translation(tiny("colourisation", tmp_path, "steps=4", "checkpoint_every=2"), progress=False)
    assert load_translation_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2


def test_weights_gone_nan_are_never_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_step = train_module.paired_step
    calls = {"n": 0}

    def poisoning(run: train_module.Run, *args: object) -> dict[str, float]:
        losses = real_step(run, *args)  # type: ignore[arg-type]
        calls["n"] += 1
        if calls["n"] == 4:
            with torch.no_grad():
                next(run.discriminators.parameters()).fill_(float("inf"))
        return losses

    monkeypatch.setattr(train_module, "paired_step", poisoning)
    with pytest.raises(TrainingDiverged, match=r"step 4: the weights of discriminators.*gan-translate train"):
        train_translation(tiny("colourisation", tmp_path, "steps=6", "checkpoint_every=2"), progress=False)
    assert load_translation_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2


def test_the_transforms_make_the_inputs_each_task_describes() -> None:
    targets = torch.rand(5, 3, 16, 16) * 2 - 1
    generator = torch.Generator().manual_seed(0)
    sr = make_sources(translation_config(None, ["task=super-resolution"]), targets, generator)
    assert sr.shape == (5, 3, 4, 4) and torch.allclose(sr[:, :, 0, 0], targets[:, :, :4, :4].mean((2, 3)))
    grey = make_sources(translation_config(None, ["task=colourisation"]), targets, generator)
    assert grey.shape == (5, 1, 16, 16)
    assert torch.allclose(grey[:, 0], 0.299 * targets[:, 0] + 0.587 * targets[:, 1] + 0.114 * targets[:, 2])
    holes = make_sources(translation_config(None, ["task=inpainting"]), targets, generator)
    mask = holes[:, 3:]
    assert holes.shape == (5, 4, 16, 16) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(holes[:, :3], targets * mask), "the hole is zeroed, the known pixels kept"
    hole_rows, hole_columns = (mask == 0).any(3).sum(2), (mask == 0).any(2).sum(2)
    assert ((hole_rows >= 4) & (hole_rows <= 8) & (hole_columns >= 4) & (hole_columns <= 8)).all()
    assert torch.equal((1 - mask).sum((1, 2, 3)), (hole_rows * hole_columns).flatten().float()), "one rectangle"


def test_held_out_patches_never_share_a_column_with_training_crops() -> None:
    columns = torch.arange(100, dtype=torch.float32).expand(3, 40, 100)  # each pixel holds its column
    split = split_columns([columns], held_out_share=0.3)
    crops = random_crops(split.train, 16, 200, torch.Generator().manual_seed(0))
    assert crops.max() < 70 and grid_patches(split.held_out, 16).min() >= 70
    banded = split_columns([columns], held_out_share=0.3, bands=2)  # [0, 35) [35, 50) | [50, 85) [85, 100)
    train_columns = set(torch.cat([r[0, 0] for r in banded.train]).long().tolist())
    held_columns = set(torch.cat([r[0, 0] for r in banded.held_out]).long().tolist())
    assert not train_columns & held_columns and len(train_columns | held_columns) == 100
    assert min(held_columns) == 35 and max(train_columns) == 84
    data = load_paired(translation_config(None, ["task=super-resolution"]))  # the shipped photos
    assert [r.shape[-1] for r in data.train_regions] == [448, 448]
    assert data.held_out[1].shape[1:] == (3, 32, 32) and data.held_out[0].shape[1:] == (3, 8, 8)
    assert torch.allclose(data.held_out[0], downscale(data.held_out[1], 4))


def test_the_digit_domains_are_disjoint_halves_and_b_is_bolder() -> None:
    domains = digits_domains(0.3)
    sizes = [len(domains.train_a), len(domains.held_out_a), len(domains.train_b), len(domains.held_out_b)]
    assert sum(sizes) == 1797 and domains.train_a.shape[1:] == (1, 16, 16)
    assert float(domains.train_b.mean()) > float(domains.train_a.mean()) + 0.1, "bold strokes cover more pixels"


def test_both_directions_of_the_digit_domains_are_scored_with_digit_class_features(tmp_path: Path) -> None:
    domains = digits_domains(0.3)
    assert domains.labels_a is not None and domains.labels_b is not None
    assert len(domains.labels_a) == len(domains.train_a) and len(domains.labels_b) == len(domains.train_b)
    seen_from_b = domains.reversed()
    assert seen_from_b.train_a is domains.train_b and seen_from_b.labels_b is domains.labels_a
    checkpoint = train_translation(tiny("unpaired", tmp_path, "steps=1"), progress=False).checkpoint
    for direction in ("a2b", "b2a"):
        result = evaluate_translation(checkpoint, tmp_path / "features", direction=direction, feature_epochs=1)
        assert result.features is not None and result.features.objective == "classes", direction


def test_a_folder_split_keeps_an_image_on_each_side_at_any_share() -> None:
    images = torch.zeros(5, 3, 8, 8)
    for share in ("0.05", "0.95"):
        config = translation_config(None, ["task=super-resolution", f"data.held_out_share={share}"])
        train, held_out = split_files(images, config)
        assert len(train) >= 1 and len(held_out) >= 1 and len(train) + len(held_out) == 5, share


def test_the_image_pool_hands_back_older_fakes_about_half_the_time() -> None:
    from training.translation.pool import ImagePool

    pool, generator = ImagePool(3), torch.Generator().manual_seed(0)
    answered = [int(pool.query(torch.full((1, 1, 2, 2), float(step)), generator)[0, 0, 0, 0]) for step in range(200)]
    assert answered[:3] == [0, 1, 2], "new fakes go in while there is room"
    older = [step for step, image in enumerate(answered) if image != step]
    assert 70 < len(older) < 130 and all(answered[step] < step for step in older)
    assert sorted(int(image[0, 0, 0, 0]) for image in pool.state().split(1)) != [0, 1, 2], "the pool is refreshed"


def test_improved_needs_both_pixel_scores_or_a_shorter_feature_distance() -> None:
    """bench/translation_quality.py exits 1 unless every model beats its plain baseline by this test."""
    from dataclasses import replace

    from training.translation.evaluate import FeatureDistance, PixelScores, TranslationEvaluation

    paired = TranslationEvaluation("run.pt", "super-resolution", "unet", "bicubic", 3, True, 10, None, None)
    assert improved(replace(paired, pixels=PixelScores(30.0, 28.0, 0.9, 0.8)))
    assert not improved(replace(paired, pixels=PixelScores(30.0, 28.0, 0.7, 0.8))), "PSNR alone is not enough"
    assert not improved(replace(paired, pixels=PixelScores(27.0, 28.0, 0.9, 0.8))), "nor SSIM alone"
    closer = FeatureDistance(model=2.0, baseline=5.0, floor=1.0, samples=64, objective="classes", held_out_accuracy=0.9)
    assert improved(replace(paired, features=closer))
    assert not improved(replace(paired, features=replace(closer, model=6.0)))
    assert not improved(replace(paired, features=replace(closer, model=float("nan"))))


def test_random_holes_respect_their_size_range() -> None:
    masks = random_holes(100, 32, 0.25, 0.5, torch.Generator().manual_seed(1))
    area = (1 - masks).sum((1, 2, 3))
    assert area.min() >= 8 * 8 and area.max() <= 16 * 16


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["task=painting"], ["task", "'painting'"]),
        (["task=super-resolution", "data.patch_size=30"], ["data.patch_size", "multiple of 4"]),
        (["task=inpainting", "data.hole_min=0.6", "data.hole_max=0.4"], ["hole_min"]),
        (["task=paired"], ["data.folder", "a/ and b/"]),
        (["task=colourisation", "model.width=0"], ["model.width"]),
        (["task=colourisation", "device=gpu"], ["device", "cuda:N", "'gpu'"]),
    ],
)
def test_a_bad_config_names_the_field(overrides: list[str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        translation_config(None, overrides)
    assert all(word in str(error.value) for word in words), str(error.value)


def test_an_unreadable_folder_is_reported_by_its_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Path(__file__).parents[2] / "training/configs/colourise.yaml"
    assert main(["train", "--config", str(config), f"data.folder={tmp_path / 'none'}", f"out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gan-translate: error: data.folder") and "Traceback" not in err
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "small.png")
    assert main(["train", "--config", str(config), f"data.folder={tmp_path}", f"out_dir={tmp_path / 'o'}"]) == 2
    assert "data.patch_size=32" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_stops_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Path(__file__).parents[2] / "training/configs/colourise.yaml"
    assert main(["train", "--config", str(config), "device=cuda", f"out_dir={tmp_path}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "device: cuda requested but torch sees no CUDA device; use device=cpu or auto" in err
    assert not (tmp_path / "checkpoint.pt").exists()


def test_the_device_is_a_run_setting_outside_the_digest() -> None:
    """A checkpoint trained on a GPU resumes and exports as the same model on a CPU, and back."""
    on_gpu, on_cpu = (translation_config(None, ["task=colourisation", f"device={d}"]) for d in ("cuda:1", "cpu"))
    assert on_gpu.device == "cuda:1" and translation_digest(on_gpu) == translation_digest(on_cpu)
    assert translation_config(None, ["task=colourisation"]).device == "auto"


def test_a_folder_of_pairs_and_two_unpaired_folders_train(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
        for index in range(4):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / side / f"{index}.png")
    paired = train_translation(tiny("paired", tmp_path / "p", f"data.folder={tmp_path}"), progress=False)
    unpaired = train_translation(
        tiny("unpaired", tmp_path / "u", f"data.folder={tmp_path}", "data.channels=3"), progress=False
    )
    assert paired.step == unpaired.step == 3


def test_psnr_and_ssim_known_values() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(4, 3, 32, 32, generator=generator) * 1.6 - 0.8  # [-0.8, 0.8]: noise is rarely clamped
    assert psnr(image, image) == PSNR_CAP and ssim(image, image) == pytest.approx(1.0)
    shifted = image + 0.2  # 0.1 on the [0, 1] scale everywhere: MSE 0.01, PSNR 20 dB
    assert psnr(shifted.clamp(-1, 1), image) == pytest.approx(20.0, abs=0.05)
    noise = torch.randn(4, 3, 32, 32, generator=generator)
    sigma = 0.02  # on the [0, 1] scale -> 0.04 on [-1, 1]; PSNR = -20 log10(sigma) = 33.98 dB
    assert psnr(image + 2 * sigma * noise, image) == pytest.approx(-20 * math.log10(sigma), abs=0.3)
    scores = [ssim(image + 2 * level * noise, image) for level in (0.01, 0.05, 0.2)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_evaluation_scores_the_model_beside_its_baseline(tmp_path: Path) -> None:
    checkpoint = train_translation(tiny("inpainting", tmp_path, "steps=2"), progress=False).checkpoint
    result = evaluate_translation(checkpoint, tmp_path / "features", tmp_path / "examples.png", feature_epochs=1)
    assert result.pixels is not None and result.features is not None
    assert result.pixels.psnr_baseline < result.pixels.psnr_model < PSNR_CAP  # known pixels are copied, holes filled
    assert result.features.floor < result.features.baseline
    assert (tmp_path / "examples.png").is_file() and isinstance(improved(result), bool)
    config = translation_config(None, ["task=super-resolution"])
    upscaled = plain_baseline(config, torch.zeros(2, 3, 8, 8))
    assert upscaled.shape == (2, 3, 32, 32)
