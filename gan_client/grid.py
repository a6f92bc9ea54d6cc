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
    save_image(tile(samples, columns), path, scale)


def save_each(samples: np.ndarray, folder: Path, scale: int = 1, first_index: int = 0) -> list[Path]:
    """One PNG per sample, sample-000000.png onwards; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for offset, sample in enumerate(samples):
        path = folder / f"sample-{first_index + offset:06d}.png"
        save_image(sample.transpose(1, 2, 0), path, scale)
        paths.append(path)
    return paths


def save_image(pixels: np.ndarray, path: Path, scale: int = 1) -> None:
    """(H, W, C) uint8 -> PNG (grey for one channel), upscaled by `scale` without smoothing."""
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    image.save(path)


def save_gif(samples: np.ndarray, path: Path, scale: int = 1, frame_ms: int = 120) -> None:
    """(N, C, H, W) uint8 -> an animated GIF of N frames that loops forever."""
    frames = []
    for sample in samples:
        pixels = sample.transpose(1, 2, 0)
        frame = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
        if scale > 1:
            frame = frame.resize((frame.width * scale, frame.height * scale), Image.Resampling.NEAREST)
        frames.append(frame)
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
