"""Check that onnxruntime computes what PyTorch computes, on the same inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from service.interpolation import one_hot
from service.signature import CLASS_WEIGHTS_INPUT, IMAGE_OUTPUT, LATENT_INPUT
from training.checkpoint import LoadedGenerator

DEFAULT_SAMPLES = 64
DEFAULT_TOLERANCE = 1e-4


class ParityError(AssertionError):
    """onnxruntime's output differs from PyTorch's by more than the tolerance."""


@dataclass(frozen=True)
class ParityReport:
    samples: int
    max_abs_error: float
    tolerance: float


def check_parity(
    loaded: LoadedGenerator,
    onnx_path: Path,
    samples: int = DEFAULT_SAMPLES,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
) -> ParityReport:
    """Run `samples` random latents (and labels) through both; raise ParityError beyond `tolerance`."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((samples, loaded.latent_dim), dtype=np.float32)
    label = rng.integers(0, max(len(loaded.class_names), 1), size=samples, dtype=np.int64)
    with torch.no_grad():
        expected = loaded.generator.eval()(torch.from_numpy(latent), torch.from_numpy(label)).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds: dict[str, np.ndarray] = {LATENT_INPUT: latent}
    if loaded.class_names:  # the graph takes class weights; one-hot rows must give the labels' images
        feeds[CLASS_WEIGHTS_INPUT] = one_hot(label, len(loaded.class_names))
    (actual,) = session.run([IMAGE_OUTPUT], feeds)
    if actual.shape != expected.shape:
        raise ParityError(f"onnxruntime output shape {actual.shape} != PyTorch {expected.shape}")
    error = float(np.max(np.abs(actual - expected)))
    if not error <= tolerance:
        raise ParityError(
            f"onnxruntime differs from PyTorch by {error:.3g} (max abs over {samples} samples), "
            f"tolerance {tolerance:g}; the export is not trustworthy"
        )
    return ParityReport(samples=samples, max_abs_error=error, tolerance=tolerance)
