"""Pictures of translations: rows of input | output | target (or baseline), as one PNG grid."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from gan_client.grid import save_grid


def displayable(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Any model input or output -> (N, channels, size, size) in [-1, 1] for a picture.

    An `rgb+mask` input shows its masked RGB (holes black-ish grey); grey is replicated to RGB;
    small inputs (super-resolution) are enlarged by repeating pixels, so the picture shows what the model saw.
    """
    if images.shape[1] == 4:
        images = images[:, :3] * images[:, 3:]
    if images.shape[1] != channels:
        images = images[:, :1].expand(-1, channels, -1, -1)
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="nearest")
    return images


def save_rows(columns: list[torch.Tensor], path: Path) -> None:
    """One row per example, one column per tensor of `columns` (each (N, C, H, W) in [-1, 1])."""
    size = max(column.shape[-1] for column in columns)
    channels = max(min(column.shape[1], 3) for column in columns)
    shown = [displayable(column.detach().cpu(), size, channels) for column in columns]
    rows = torch.stack(shown, dim=1).flatten(0, 1)  # (N * columns, C, H, W), row-major
    pixels = ((rows + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_grid(pixels, path, scale=max(1, 64 // size), columns=len(columns))
