"""Decoded input images as the user sees them: EXIF orientation and 16-bit greyscale."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from service.encoding import upright_8bit


def _reopened(image: Image.Image, format: str, **save: object) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **save)
    opened = Image.open(io.BytesIO(buffer.getvalue()))
    opened.load()
    return opened


def test_a_sixteen_bit_grey_png_keeps_its_grey() -> None:
    ramp = np.array([[0, 32768, 65535]], dtype=np.uint16)
    opened = _reopened(Image.fromarray(ramp), "PNG")
    assert opened.mode.startswith("I")
    assert np.asarray(opened.convert("L")).tolist() == [[0, 255, 255]], "what Pillow alone gives"
    upright = upright_8bit(opened)
    assert upright.mode == "L" and np.asarray(upright).tolist() == [[0, 128, 255]]


def test_a_portrait_photo_stored_landscape_is_turned_upright() -> None:
    landscape = Image.new("RGB", (32, 16), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    opened = _reopened(landscape, "JPEG", exif=exif.tobytes())
    assert opened.size == (32, 16)
    assert upright_8bit(opened).size == (16, 32)
    plain = _reopened(landscape, "PNG")
    assert upright_8bit(plain).size == (32, 16) and upright_8bit(plain).mode == "RGB"
