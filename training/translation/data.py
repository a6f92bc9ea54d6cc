"""Translation data: pairs made from target images by a transform, folders of pairs, and two unpaired domains.

Images are float32 (C, H, W) or (N, C, H, W) in [-1, 1]; an inpainting mask channel is 0 or 1.

Paired tasks made from target images (super-resolution, inpainting, colourisation) crop random
patches from photographs: scikit-learn's two bundled sample photos (china.jpg, flower.jpg,
427x640, no download) or every image of `data.folder`. Each photo is split by columns: training
crops come only from the left (1 - held_out_share) of its columns, evaluation patches only from
the right, so the evaluation sees pixels the model never trained on.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from training.data import DIGITS_MAX, IMAGE_SUFFIXES, DataError, open_image, upsample_digits
from training.translation.config import SR_SCALE, TranslationConfig

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 luminance weights; they sum to 1, so [-1, 1] maps to [-1, 1]
HELD_OUT_SEED = 1234  # the holes of the evaluation patches: the same in every evaluation
DIGITS_SIZE = 16


@dataclass(frozen=True)
class Split:
    """Columns [0, cut) of each photo train, [cut, width) are held out."""

    train: list[torch.Tensor]  # (C, H, w_train) regions
    held_out: list[torch.Tensor]  # (C, H, w_held) regions


@dataclass(frozen=True)
class PairedData:
    """What pix2pix trains on and is judged on; `draw` gives a fresh training batch."""

    config: TranslationConfig
    train_regions: list[torch.Tensor]  # regions to crop from (transform tasks) ...
    train_pairs: tuple[torch.Tensor, torch.Tensor] | None  # ... or fixed (source, target) pairs (task paired)
    held_out: tuple[torch.Tensor, torch.Tensor]  # (N, C_in, h, w) sources, (N, C_out, H, W) targets
    train_targets: torch.Tensor  # (M, C_out, H, W) real target-domain images for the feature network

    def draw(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.train_pairs is not None:
            index = torch.randint(len(self.train_pairs[0]), (count,), generator=generator)
            return self.train_pairs[0][index], self.train_pairs[1][index]
        targets = random_crops(self.train_regions, self.config.data.patch_size, count, generator)
        return make_sources(self.config, targets, generator), targets


@dataclass(frozen=True)
class UnpairedData:
    train_a: torch.Tensor  # (N, C, H, W)
    train_b: torch.Tensor
    held_out_a: torch.Tensor
    held_out_b: torch.Tensor
    labels_b: torch.Tensor | None  # classes of train_b (the digits), for the feature network
    labels_a: torch.Tensor | None = None  # classes of train_a: the feature network's when scoring b2a

    def reversed(self) -> UnpairedData:
        """The same data seen from domain B: what b2a translates from and to."""
        return UnpairedData(
            self.train_b, self.train_a, self.held_out_b, self.held_out_a, self.labels_a, labels_a=self.labels_b
        )

    def draw(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.randint(len(self.train_a), (count,), generator=generator)
        b = torch.randint(len(self.train_b), (count,), generator=generator)
        return self.train_a[a], self.train_b[b]


def load_paired(config: TranslationConfig) -> PairedData:
    if config.task == "paired":
        return _file_pairs(config)
    split = split_columns(_photos(config), config.data.held_out_share, config.data.bands)
    patch = config.data.patch_size
    held_targets = grid_patches(split.held_out, patch)
    held_sources = make_sources(config, held_targets, torch.Generator().manual_seed(HELD_OUT_SEED))
    return PairedData(config, split.train, None, (held_sources, held_targets), grid_patches(split.train, patch))


def load_unpaired(config: TranslationConfig) -> UnpairedData:
    if config.data.folder is None:
        return digits_domains(config.data.held_out_share)
    folder = _folder(config)
    a = _read_folder(folder / "a", config, "data.folder/a")
    b = _read_folder(folder / "b", config, "data.folder/b")
    (train_a, held_a), (train_b, held_b) = split_files(a, config), split_files(b, config)
    return UnpairedData(train_a, train_b, held_a, held_b, None)


# --- transforms: target patches (N, 3, P, P) -> model inputs ---


def make_sources(config: TranslationConfig, targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if config.task == "super-resolution":
        return downscale(targets, SR_SCALE)
    if config.task == "inpainting":
        mask = random_holes(len(targets), targets.shape[-1], config.data.hole_min, config.data.hole_max, generator)
        return torch.cat([targets * mask, mask], dim=1)
    if config.task == "colourisation":
        return to_grey(targets)
    raise ValueError(f"task: {config.task!r} has no transform; its pairs come from data.folder")


def downscale(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Area averaging: each output pixel is the mean of a factor x factor block. (N, C, H/f, W/f)."""
    return F.avg_pool2d(images, factor)


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) luminance."""
    weights = torch.tensor(LUMA, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def random_holes(count: int, size: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """(count, 1, size, size) masks, 1 known and 0 in one random rectangle whose sides are low..high x size."""
    shortest, longest = max(1, round(low * size)), max(1, round(high * size))
    sides = torch.randint(shortest, longest + 1, (count, 2), generator=generator)
    corner = (torch.rand(count, 2, generator=generator) * (size - sides + 1)).floor().long()
    rows = torch.arange(size).view(1, size, 1)
    columns = torch.arange(size).view(1, 1, size)
    top, left = corner[:, 0].view(-1, 1, 1), corner[:, 1].view(-1, 1, 1)
    height, width = sides[:, 0].view(-1, 1, 1), sides[:, 1].view(-1, 1, 1)
    hole = (rows >= top) & (rows < top + height) & (columns >= left) & (columns < left + width)
    return (~hole).float().unsqueeze(1)


# --- photos, split by columns, cropped into patches ---


def sample_photos() -> list[torch.Tensor]:
    """scikit-learn's bundled china.jpg and flower.jpg, (3, 427, 640) each; shipped with it, never downloaded."""
    from sklearn.datasets import load_sample_images

    return [_to_tensor(np.asarray(image)) for image in load_sample_images().images]


def split_columns(photos: list[torch.Tensor], held_out_share: float, bands: int = 1) -> Split:
    """Each photo cut into `bands` equal column bands; each band's right held_out_share is held out.

    One band is a plain left/right split; more bands spread both sets over the whole photo, so
    the held-out pixels are not all from one side (a blurred background, say) of the scene.
    """
    train, held_out = [], []
    for photo in photos:
        edges = [round(i * photo.shape[-1] / bands) for i in range(bands + 1)]
        for start, end in itertools.pairwise(edges):
            cut = start + train_columns(end - start, held_out_share)
            train.append(photo[..., start:cut])
            held_out.append(photo[..., cut:end])
    return Split(train, held_out)


def train_columns(width: int, held_out_share: float) -> int:
    return round(width * (1 - held_out_share))


def random_crops(regions: list[torch.Tensor], patch: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` patch x patch crops, each from a random region at a random place: (count, C, patch, patch)."""
    which = torch.randint(len(regions), (count,), generator=generator).tolist()
    crops = []
    for index in which:
        region = regions[index]
        top = int(torch.randint(region.shape[-2] - patch + 1, (1,), generator=generator))
        left = int(torch.randint(region.shape[-1] - patch + 1, (1,), generator=generator))
        crops.append(region[:, top : top + patch, left : left + patch])
    return torch.stack(crops)


def grid_patches(regions: list[torch.Tensor], patch: int) -> torch.Tensor:
    """Every patch on a grid of stride patch / 2 inside each region: (N, C, patch, patch)."""
    stride = max(1, patch // 2)
    patches = []
    for region in regions:
        unfolded = region.unfold(1, patch, stride).unfold(2, patch, stride)  # (C, rows, cols, P, P)
        patches.append(unfolded.permute(1, 2, 0, 3, 4).reshape(-1, region.shape[0], patch, patch))
    return torch.cat(patches)


def _photos(config: TranslationConfig) -> list[torch.Tensor]:
    if config.data.folder is None:
        return sample_photos()
    folder = _folder(config)
    files = _image_files(folder, "data.folder")
    photos = [_to_tensor(np.asarray(open_image(path, "data.folder").convert("RGB"))) for path in files]
    patch, share, bands = config.data.patch_size, config.data.held_out_share, config.data.bands
    for path, photo in zip(files, photos, strict=True):
        regions = split_columns([photo], share, bands)
        if any(min(region.shape[-2:]) < patch for region in regions.train + regions.held_out):
            raise DataError(
                f"{path}: {photo.shape[-2]}x{photo.shape[-1]} is too small for data.patch_size={patch} with "
                f"data.held_out_share={share} and data.bands={bands} (every column region needs {patch} pixels); "
                "use larger images, a smaller data.patch_size or fewer data.bands"
            )
    return photos


# --- folders of whole images ---


def _file_pairs(config: TranslationConfig) -> PairedData:
    folder = _folder(config)
    a_files = _image_files(folder / "a", "data.folder/a")
    b_names = {path.name for path in _image_files(folder / "b", "data.folder/b")}
    unmatched = [path.name for path in a_files if path.name not in b_names]
    if unmatched:
        raise DataError(
            f"{folder / 'b'}: has no images named {unmatched[:5]} as in {folder / 'a'}; pairs match by name"
        )
    sources = _read_files(a_files, config)
    targets = _read_files([folder / "b" / path.name for path in a_files], config)
    train_a, held_a = split_files(sources, config)
    train_b, held_b = split_files(targets, config)
    return PairedData(config, [], (train_a, train_b), (held_a, held_b), train_b)


def split_files(images: torch.Tensor, config: TranslationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The last held_out_share of the (name-sorted) images are held out; at least one on each side."""
    if len(images) < 2:
        raise DataError(
            f"data.folder: each folder needs at least 2 images (one to train, one held out), got {len(images)}"
        )
    cut = min(len(images) - 1, max(1, train_columns(len(images), config.data.held_out_share)))
    return images[:cut], images[cut:]


def _folder(config: TranslationConfig) -> Path:
    folder = config.data.folder
    assert folder is not None  # the callers only come here with a folder
    if not folder.is_dir():
        raise DataError(f"data.folder: {folder} is not a readable folder; fix data.folder=... or leave it out")
    return folder


def _read_folder(folder: Path, config: TranslationConfig, field: str) -> torch.Tensor:
    return _read_files(_image_files(folder, field), config)


def _image_files(folder: Path, field: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{field}: {folder} is not a readable folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{field}: {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _read_files(files: list[Path], config: TranslationConfig) -> torch.Tensor:
    mode = "L" if config.data.channels == 1 else "RGB"
    size = (config.data.patch_size, config.data.patch_size)
    images = [open_image(path, "data.folder").convert(mode).resize(size, Image.Resampling.BICUBIC) for path in files]
    return torch.stack([_to_tensor(np.asarray(image)) for image in images])


def _to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) uint8 -> (C, H, W) float32 in [-1, 1]."""
    array = pixels[:, :, None] if pixels.ndim == 2 else pixels
    return torch.from_numpy(array.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1).contiguous()


# --- the shipped unpaired example ---


def digits_domains(held_out_share: float, seed: int = 0) -> UnpairedData:
    """Plain digits (domain A) and bold digits (domain B) from two disjoint halves of sklearn's digits.

    Both 16x16 (8x8 digits, pixels repeated); bold = strokes dilated by a 3x3 max-pool. No digit
    appears in both domains, so the model cannot learn the pairs; each half keeps its last
    held_out_share for evaluation.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / DIGITS_MAX).unsqueeze(1)
    images = upsample_digits(images, DIGITS_SIZE) * 2 - 1  # (1797, 1, 16, 16) in [-1, 1]
    labels = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    half_a, half_b = order[: len(order) // 2], order[len(order) // 2 :]
    plain, bold = images[half_a], embolden(images[half_b])
    cut_a, cut_b = train_columns(len(plain), held_out_share), train_columns(len(bold), held_out_share)
    labels_a, labels_b = labels[half_a][:cut_a], labels[half_b][:cut_b]
    return UnpairedData(plain[:cut_a], bold[:cut_b], plain[cut_a:], bold[cut_b:], labels_b, labels_a=labels_a)


def embolden(images: torch.Tensor) -> torch.Tensor:
    """Thicker strokes: each pixel becomes the brightest of its 3x3 neighbourhood."""
    return F.max_pool2d(images, 3, stride=1, padding=1)
