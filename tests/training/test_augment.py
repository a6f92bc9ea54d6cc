"""DiffAugment: each transform keeps shapes, lets gradients through, and does what it says."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY
from training.augment import color, cutout, diff_augment, translation
from training.config import ConfigError, load_config
from training.train import train


def seeded() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize("policy", [("color",), ("translation",), ("cutout",), ("color", "translation", "cutout")])
def test_transforms_keep_the_shape_and_pass_gradients(policy: tuple[str, ...]) -> None:
    images = torch.rand(6, 3, 16, 16, requires_grad=True)
    out = diff_augment(images, policy, seeded())
    assert out.shape == images.shape
    out.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_translation_moves_content_and_fills_with_zeros() -> None:
    images = torch.ones(64, 1, 16, 16)
    shifted = translation(images, seeded())
    assert torch.all((shifted == 0) | (shifted == 1))
    empty_rows = (shifted.sum(dim=(1, 3)) == 0).sum(dim=1)  # zero rows that shifted in, per image
    assert empty_rows.max() <= 2 and (shifted == 0).any()


def test_cutout_zeroes_a_square_of_half_the_size_at_most() -> None:
    images = torch.ones(64, 1, 16, 16)
    zeroed = (cutout(images, seeded()) == 0).flatten(1).sum(dim=1)
    assert zeroed.max() == 8 * 8 and zeroed.min() > 0


def test_color_changes_brightness_per_image_not_per_pixel() -> None:
    images = torch.full((8, 1, 4, 4), 0.5)
    out = color(images, seeded())
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out))
    assert out.flatten(1)[:, 0].unique().numel() > 1


def test_color_changes_contrast_and_saturation_too() -> None:
    """Contrast scales every pixel's distance from the image's mean; saturation, on top, each pixel's
    colour around its own grey. Image: two grey halves (-0.5, 0.5) tinted +0.2 red, -0.2 green."""
    images = torch.cat([torch.full((64, 3, 4, 2), -0.5), torch.full((64, 3, 4, 2), 0.5)], dim=3)
    images[:, 0] += 0.2
    images[:, 1] -= 0.2

    def grey_spread_and_colourfulness(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grey = batch.mean(dim=1, keepdim=True)
        return grey.std(dim=(1, 2, 3)), (batch - grey).std(dim=(1, 2, 3))

    spread, colour = grey_spread_and_colourfulness(color(images, seeded()))
    spread_before, colour_before = grey_spread_and_colourfulness(images)
    contrast, saturation = spread / spread_before, (colour / colour_before) / (spread / spread_before)
    assert contrast.min() < 0.7 and contrast.max() > 1.3
    assert saturation.min() < 0.7 and saturation.max() > 1.3


def test_training_with_diffaugment_from_the_command_line(tmp_path: Path) -> None:
    config = load_config(None, [*TINY, f"out_dir={tmp_path}", "steps=3", "optim.diffaugment=color,translation,cutout"])
    assert config.optim.diffaugment == ("color", "translation", "cutout")
    assert all(math.isfinite(v) for v in train(config, progress=False).losses.values())
    with pytest.raises(ConfigError, match=r"optim\.diffaugment"):
        load_config(None, ["optim.diffaugment=color,blur"])
