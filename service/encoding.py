"""Turning generated float samples into the output formats clients ask for."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def to_uint8(samples: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Map float samples in `value_range` to uint8 0..255, clipping outliers."""
    low, high = value_range
    scaled = (samples - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_png(sample: np.ndarray) -> bytes:
    """One uint8 sample (C, H, W) with C of 1 (grayscale) or 3 (RGB) as PNG bytes."""
    channels = sample.shape[0]
    if channels == 1:
        image = Image.fromarray(np.ascontiguousarray(sample[0]))
    elif channels == 3:
        image = Image.fromarray(np.ascontiguousarray(sample.transpose(1, 2, 0)))
    else:
        raise ValueError(f"PNG output needs 1 or 3 channels, the model makes {channels}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
