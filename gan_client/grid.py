"""Tiling uint8 samples (N, C, H, W) into one image."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image


def tile(samples: np.ndarray, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """(N, C, H, W) uint8 -> (rows*(H+p)+p, cols*(W+p)+p, C) uint8, row-major order."""
    count, channels, height, width = samples.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.zeros((rows * (height + padding) + padding, columns * (width + padding) + padding, channels), np.uint8)
    for index, sample in enumerate(samples):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top : top + height, left : left + width] = sample.transpose(1, 2, 0)
    return grid


def save_grid(samples: np.ndarray, path: Path, scale: int = 1, columns: int | None = None) -> None:
    grid = tile(samples, columns)
    image = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    image.save(path)
