"""Training data, all in memory: scikit-learn's bundled digits, any folder of images, or 2-D points.

Images are float32 tensors (N, C, H, W) scaled to [-1, 1]; labels are int64 (N,). The ring8 and
grid25 sources are 2-D Gaussian mixtures (training/mode_coverage.py): float32 (N, 2) points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from service.encoding import upright_8bit
from training.config import DataConfig

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
DIGITS_MAX = 16.0  # sklearn's digits hold values 0..16 on an 8x8 grid


class DataError(ValueError):
    """The data cannot be used for training; the message names the path and what to do."""


@dataclass(frozen=True)
class ImageDataset:
    images: torch.Tensor  # (N, C, H, W) float32 in [-1, 1], or (N, 2) points for ring8 and grid25
    labels: torch.Tensor  # (N,) int64; zeros when unconditional
    class_names: list[str]  # empty when unconditional

    def __len__(self) -> int:
        return len(self.images)


def load_dataset(config: DataConfig) -> ImageDataset:
    if config.source == "digits":
        return load_digits(config)
    if config.is_points:
        return load_points(config)
    assert config.path is not None  # guaranteed by DataConfig
    return load_folder(config.path, config)


def load_digits(config: DataConfig) -> ImageDataset:
    """sklearn's 1,797 8x8 digits, upsampled to image_size."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / DIGITS_MAX).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    images = upsample_digits(images, config.image_size)
    images = images.expand(-1, config.channels, -1, -1).contiguous() * 2 - 1
    labels = torch.from_numpy(digits.target.astype(np.int64))
    if not config.conditional:
        return ImageDataset(images, torch.zeros_like(labels), [])
    return ImageDataset(images, labels, [str(d) for d in range(10)])


def load_points(config: DataConfig, seed: int = 0) -> ImageDataset:
    """`config.points` draws of the ring8 or grid25 mixture (a fixed seed: the same data every run)."""
    from training.mode_coverage import MIXTURES

    points = MIXTURES[config.source]().sample(config.points, np.random.default_rng(seed))
    tensor = torch.from_numpy(points.astype(np.float32))
    return ImageDataset(tensor, torch.zeros(len(tensor), dtype=torch.int64), [])


def upsample_digits(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1, 8, 8) -> (N, 1, size, size) by repeating pixels.

    Nearest rather than bilinear on purpose: `downsample` (area averaging) then gives back
    the original digits exactly, so samples can be judged against real digits at 8x8.
    Bilinear smoothing would make even real digits lose about 30 % of their diversity.
    """
    return F.interpolate(images, size=(size, size), mode="nearest")


def downsample(images: torch.Tensor, size: int = 8) -> torch.Tensor:
    """Area-average (N, C, H, W) down to (N, C, size, size)."""
    return F.adaptive_avg_pool2d(images, size)


def load_folder(root: Path, config: DataConfig) -> ImageDataset:
    """Every image under `root`; with `conditional`, one immediate subfolder per class."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; set data.path to a folder of images")
    if not config.conditional:
        files = _image_files(root)
        if not files:
            raise DataError(f"{root}: holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); add some or fix data.path")
        return ImageDataset(_read_images(files, config), torch.zeros(len(files), dtype=torch.int64), [])
    classes = sorted(child.name for child in root.iterdir() if child.is_dir())
    if not classes:
        raise DataError(
            f"{root}: a conditional model needs one subfolder per class (e.g. {root}/cat, {root}/dog); "
            "found none. Set data.conditional=false to train on the images directly"
        )
    files, labels = [], []
    for label, name in enumerate(classes):
        found = _image_files(root / name)
        if not found:
            raise DataError(f"{root / name}: class folder holds no images; add some or remove the folder")
        files += found
        labels += [label] * len(found)
    return ImageDataset(_read_images(files, config), torch.tensor(labels, dtype=torch.int64), classes)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_images(files: list[Path], config: DataConfig) -> torch.Tensor:
    mode = "L" if config.channels == 1 else "RGB"
    size = (config.image_size, config.image_size)
    arrays = [np.asarray(open_image(path).convert(mode).resize(size, Image.Resampling.BILINEAR)) for path in files]
    stacked = torch.from_numpy(np.stack(arrays).astype(np.float32) / 127.5 - 1.0)
    return stacked.unsqueeze(1) if config.channels == 1 else stacked.permute(0, 3, 1, 2).contiguous()


def open_image(path: Path, field: str | None = None) -> Image.Image:
    """The decoded image at `path`; DataError (naming the config `field` when given) if it is unreadable."""
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        where = f"{field}: cannot read {path}" if field else f"{path}: cannot read this image"
        raise DataError(f"{where} ({exc}); remove or replace it") from None
    return upright_8bit(image)  # as the service reads a request's image
