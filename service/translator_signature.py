"""The contract of an image-to-image generator (pix2pix, CycleGAN): its tensors and metadata.

A translator's ONNX graph takes `source` (N, C_in, H, W) float32 and returns `image`
(N, C_out, H * scale, W * scale) float32, both in `value_range` ([-1, 1]) except the mask
channel of `rgb+mask` inputs. H and W are dynamic where the architecture allows: any
positive multiple of `size_multiple`. The metadata key `gan.translator` holds the JSON of
`TranslatorSignature`; gan-export writes it, the service reads it, and neither side needs
the other's code. This module imports neither torch nor onnxruntime.

Input formats, and how a client image becomes the `source` tensor:
- `rgb`: 3 channels, red, green, blue.
- `gray`: 1 channel, luminance (a colour image is converted to grey first).
- `rgb+mask`: 4 channels: red, green, blue, then a mask holding 1.0 where the pixel is known
  and 0.0 where the model should fill it in (not scaled to value_range). In an encoded image
  the mask is the alpha channel: alpha >= 128 is known, below is a hole.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from service.errors import ModelLoadError

TRANSLATOR_SCHEMA = 1
SOURCE_INPUT = "source"  # (N, C_in, H, W) float32
IMAGE_OUTPUT = "image"  # (N, C_out, H * scale, W * scale) float32
KEY_TRANSLATOR = "gan.translator"

INPUT_CHANNELS = {"rgb": 3, "gray": 1, "rgb+mask": 4}


@dataclass(frozen=True)
class TranslatorSignature:
    """What an image-to-image generator takes and gives."""

    task: str  # what it does, for people: "super-resolution", "inpainting", "colourisation", "digits-to-bold", ...
    architecture: str  # "pix2pix-unet" or "cyclegan-resnet"
    input_format: str  # a key of INPUT_CHANNELS
    output_channels: int  # 1 (grey) or 3 (RGB)
    scale: int  # output side / input side (4 for 4x super-resolution, else 1)
    size_multiple: int  # H and W of the input must be positive multiples of this
    train_size: tuple[int, int]  # (H, W) of the inputs it was trained on; warm-up runs at this size
    value_range: tuple[float, float]
    config_digest: str
    dynamic_size: bool = True  # False: only train_size is accepted (the graph has fixed H and W)

    @property
    def input_channels(self) -> int:
        return INPUT_CHANNELS[self.input_format]

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return height * self.scale, width * self.scale

    def size_problem(self, height: int, width: int) -> str | None:
        """Why an input of this size cannot run, or None if it can."""
        if not self.dynamic_size and (height, width) != self.train_size:
            return f"is {height}x{width}; this model only takes {self.train_size[0]}x{self.train_size[1]} inputs"
        multiple = self.size_multiple
        if height < multiple or width < multiple or height % multiple or width % multiple:
            return f"is {height}x{width}; height and width must be positive multiples of {multiple}"
        return None

    def to_metadata(self) -> dict[str, str]:
        content = {"schema": TRANSLATOR_SCHEMA, **asdict(self)}
        return {KEY_TRANSLATOR: json.dumps(content)}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str) -> TranslatorSignature:
        try:
            raw = json.loads(metadata[KEY_TRANSLATOR])
            if raw.get("schema") != TRANSLATOR_SCHEMA:
                raise ValueError(f"schema {raw.get('schema')!r}, expected {TRANSLATOR_SCHEMA}")
            signature = cls(
                task=str(raw["task"]),
                architecture=str(raw["architecture"]),
                input_format=str(raw["input_format"]),
                output_channels=int(raw["output_channels"]),
                scale=int(raw["scale"]),
                size_multiple=int(raw["size_multiple"]),
                train_size=(int(raw["train_size"][0]), int(raw["train_size"][1])),
                value_range=(float(raw["value_range"][0]), float(raw["value_range"][1])),
                config_digest=str(raw.get("config_digest", "")),
                dynamic_size=bool(raw.get("dynamic_size", True)),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelLoadError(f"{source}: metadata {KEY_TRANSLATOR} is not a translator signature: {exc}") from None
        if signature.input_format not in INPUT_CHANNELS:
            raise ModelLoadError(
                f"{source}: {KEY_TRANSLATOR} input_format {signature.input_format!r} is not one of "
                f"{sorted(INPUT_CHANNELS)}"
            )
        if signature.output_channels not in (1, 3) or signature.scale < 1 or signature.size_multiple < 1:
            raise ModelLoadError(f"{source}: {KEY_TRANSLATOR} describes an impossible model: {signature}")
        return signature
