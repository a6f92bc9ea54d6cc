"""Image formats: generated float samples into the outputs clients ask for, and decoded inputs
into what a model reads."""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image, ImageOps


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


ReplyFormat = Literal["float32", "uint8", "png"]
REPLY_OVERHEAD_BYTES = 64 * 1024  # a reply's fields besides its images
PNG_OVERHEAD_BYTES = 160  # a PNG's signature, header, end and first data chunks, and its field in a reply


def image_reply_bytes(channels: int, height: int, width: int, reply_format: ReplyFormat) -> int:
    """At most how many bytes one (C, H, W) image takes in a reply."""
    values = channels * height * width
    if reply_format == "float32":
        return 4 * values
    if reply_format == "uint8":
        return values
    # At most the pixels stored uncompressed (deflate's worst case, which noise and tiny images
    # approach): a filter byte a row, a 5-byte block header and a 12-byte chunk per 64 KiB.
    stored = values + height
    return stored + 17 * (stored // 65535 + 1) + PNG_OVERHEAD_BYTES


_WIDE_INTEGER_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16- and 32-bit greyscale


def upright_8bit(image: Image.Image) -> Image.Image:
    """A decoded image as the user sees it: turned by its EXIF orientation (a phone's portrait
    photo is stored landscape), and 16-bit greyscale scaled to 8 bits (Pillow's convert clips
    it at 255, so a mid-grey 16-bit PNG would read as white)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in _WIDE_INTEGER_MODES:
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() <= 65535 else float(2**32 - 1)
        image = Image.fromarray(np.rint(pixels * (255.0 / top)).astype(np.uint8), mode="L")
    return image
