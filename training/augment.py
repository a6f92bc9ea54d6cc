"""Differentiable augmentation for small datasets (the idea of Zhao et al. 2020, DiffAugment).

The same random transforms are applied to real and generated images every time the
discriminator sees them, for both networks' updates. Because each transform is
differentiable, the generator still gets gradients through it, and the discriminator cannot
memorise a small training set. Policies: `color` (brightness, saturation, contrast),
`translation` (shift by up to 1/8 of the size, zero-filled), `cutout` (a zeroed square of
half the size).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One U[0, 1) number per image, shaped to broadcast over (C, H, W)."""
    return torch.rand(images.shape[0], 1, 1, 1, generator=generator).to(images.device, images.dtype)


def color(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    images = images + (_uniform(images, generator) - 0.5)  # brightness
    mean = images.mean(dim=1, keepdim=True)
    images = (images - mean) * (_uniform(images, generator) * 2) + mean  # saturation
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * (_uniform(images, generator) + 0.5) + mean  # contrast


def translation(images: torch.Tensor, generator: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    batch, _, height, width = images.shape
    shift_y, shift_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = torch.randint(-shift_y, shift_y + 1, (batch, 1, 1), generator=generator).to(images.device)
    dx = torch.randint(-shift_x, shift_x + 1, (batch, 1, 1), generator=generator).to(images.device)
    index_b, index_y, index_x = torch.meshgrid(
        torch.arange(batch, device=images.device),
        torch.arange(height, device=images.device),
        torch.arange(width, device=images.device),
        indexing="ij",
    )
    # Pad by one zero pixel and clamp: whatever shifts in from outside is that zero border.
    index_y = torch.clamp(index_y + dy + 1, 0, height + 1)
    index_x = torch.clamp(index_x + dx + 1, 0, width + 1)
    padded = F.pad(images, [1, 1, 1, 1])
    return padded.permute(0, 2, 3, 1)[index_b, index_y, index_x].permute(0, 3, 1, 2).contiguous()


def cutout(images: torch.Tensor, generator: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    batch, _, height, width = images.shape
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    top = torch.randint(0, height + (1 - size_y % 2), (batch, 1, 1), generator=generator).to(images.device)
    left = torch.randint(0, width + (1 - size_x % 2), (batch, 1, 1), generator=generator).to(images.device)
    rows = torch.arange(height, device=images.device).view(1, height, 1)
    cols = torch.arange(width, device=images.device).view(1, 1, width)
    inside = (
        (rows >= top - size_y // 2) & (rows < top - size_y // 2 + size_y)
        & (cols >= left - size_x // 2) & (cols < left - size_x // 2 + size_x)
    )  # fmt: skip
    return images * (~inside).unsqueeze(1).to(images.dtype)


POLICIES: dict[str, Augment] = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(images: torch.Tensor, policy: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """Apply the named transforms in order; an empty policy returns `images` unchanged."""
    for name in policy:
        images = POLICIES[name](images, generator)
    return images
