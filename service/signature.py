"""What an exported generator says about itself, and how it is stored in ONNX metadata.

The exporter writes these keys into the model's metadata_props; the service reads them
back, so serving needs nothing from the training code. This module imports neither
torch nor onnxruntime: both sides share it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from service.errors import ModelLoadError

SCHEMA_VERSION = "1"
LATENT_INPUT = "latent"  # (N, latent_dim) float32
LABEL_INPUT = "label"  # (N,) int64; conditional generators exported before class weights
CLASS_WEIGHTS_INPUT = "class_weights"  # (N, num_classes) float32; conditional generators exported since
LABEL_INPUTS = (LABEL_INPUT, CLASS_WEIGHTS_INPUT)
IMAGE_OUTPUT = "image"  # (N, C, H, W) float32 in value_range

KEY_SCHEMA = "gan.schema_version"
KEY_LATENT_DIM = "gan.latent_dim"
KEY_CLASS_NAMES = "gan.class_names"
KEY_SAMPLE_SHAPE = "gan.sample_shape"
KEY_VALUE_RANGE = "gan.value_range"
KEY_CONFIG_DIGEST = "gan.config_digest"
KEY_ARCHITECTURE = "gan.architecture"
KEY_LABEL_INPUT = "gan.label_input"  # which of LABEL_INPUTS a conditional graph takes; absent: "label"


@dataclass(frozen=True)
class Signature:
    """The contract of one generator: what goes in and what comes out."""

    latent_dim: int
    class_names: tuple[str, ...]
    sample_shape: tuple[int, int, int]  # (C, H, W)
    value_range: tuple[float, float]
    config_digest: str
    architecture: str
    # A conditional graph's class input: "label" (int64 class indices) or "class_weights"
    # (float32 rows; a one-hot row is the plain class, a convex mix interpolates between classes).
    label_input: str = LABEL_INPUT

    @property
    def conditional(self) -> bool:
        return len(self.class_names) > 0

    @property
    def takes_class_weights(self) -> bool:
        return self.conditional and self.label_input == CLASS_WEIGHTS_INPUT

    def to_metadata(self) -> dict[str, str]:
        """The ONNX metadata_props that describe this signature."""
        return {
            KEY_SCHEMA: SCHEMA_VERSION,
            KEY_LATENT_DIM: str(self.latent_dim),
            KEY_CLASS_NAMES: json.dumps(list(self.class_names)),
            KEY_SAMPLE_SHAPE: json.dumps(list(self.sample_shape)),
            KEY_VALUE_RANGE: json.dumps(list(self.value_range)),
            KEY_CONFIG_DIGEST: self.config_digest,
            KEY_ARCHITECTURE: self.architecture,
            KEY_LABEL_INPUT: self.label_input,
        }


def signature_from_metadata(metadata: Mapping[str, str], source: str) -> Signature:
    """Parse the metadata written by `Signature.to_metadata`; `source` names the file in errors."""
    if metadata.get(KEY_SCHEMA) != SCHEMA_VERSION:
        raise ModelLoadError(
            f"{source}: metadata {KEY_SCHEMA} is {metadata.get(KEY_SCHEMA)!r}, expected "
            f"{SCHEMA_VERSION!r}; export the model with gan-export"
        )
    try:
        shape = json.loads(metadata[KEY_SAMPLE_SHAPE])
        low, high = json.loads(metadata[KEY_VALUE_RANGE])
        signature = Signature(
            latent_dim=int(metadata[KEY_LATENT_DIM]),
            class_names=tuple(str(name) for name in json.loads(metadata[KEY_CLASS_NAMES])),
            sample_shape=(int(shape[0]), int(shape[1]), int(shape[2])),
            value_range=(float(low), float(high)),
            config_digest=metadata.get(KEY_CONFIG_DIGEST, ""),
            architecture=metadata.get(KEY_ARCHITECTURE, ""),
            label_input=metadata.get(KEY_LABEL_INPUT, LABEL_INPUT),
        )
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise ModelLoadError(f"{source}: unreadable gan.* metadata ({exc!r}); re-export the model") from None
    if signature.label_input not in LABEL_INPUTS:
        raise ModelLoadError(
            f"{source}: metadata {KEY_LABEL_INPUT} is {signature.label_input!r}, not one of {LABEL_INPUTS}"
        )
    if signature.latent_dim < 1 or min(signature.sample_shape) < 1 or low >= high:
        raise ModelLoadError(f"{source}: metadata describes an impossible model: {signature}")
    return signature
