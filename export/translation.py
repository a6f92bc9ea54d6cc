"""Export an image-to-image generator (gan-translate) to ONNX: `source` -> `image`, signature in the metadata.

The graph is the whole generator: the bicubic upsampling of super-resolution and the compositing
of inpainting are in it. The batch axis is dynamic, and so are height and width, constrained to
multiples of the architecture's size_multiple (torch.export derived dimensions: H = m * h_blocks).
onnxruntime itself does not check that divisibility: the service rejects other sizes before
running the model, from `TranslatorSignature.size_problem`. Parity with PyTorch is checked at the
training size and at a second, different allowed size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from export.model_repository import check_publishable, publish_version, staged_version, write_json
from export.parity import DEFAULT_TOLERANCE, ParityError, ParityReport
from export.to_onnx import MAX_BATCH, OPSET, VALUE_RANGE, InRange, write_program
from service.layout import MODEL_FILE
from service.translator_signature import IMAGE_OUTPUT, SOURCE_INPUT, TranslatorSignature
from training.translation.checkpoint import Direction, LoadedTranslator, load_translator
from training.translation.data import random_holes

MAX_SIDE = 4096  # the largest input height or width the graph declares
TRANSLATOR_MAX_BATCH = 16  # config.json default: a batch of images is far heavier than a batch of latents
NEW_CONFIG = {"max_batch_size": TRANSLATOR_MAX_BATCH}  # for a new config.json only: later exports keep edits
PARITY_BATCH = 3  # images checked at each size unless gan-export --parity-samples says otherwise


@dataclass(frozen=True)
class TranslationExport:
    name: str
    version: int
    path: Path
    parity: ParityReport
    signature: TranslatorSignature
    parity_sizes: list[tuple[int, int]]


def export_translation(
    checkpoint: Path,
    repository: Path,
    name: str,
    version: int | None = None,
    direction: Direction = "a2b",
    tolerance: float = DEFAULT_TOLERANCE,
    model_config: dict[str, object] | None = None,
    parity_batch: int = PARITY_BATCH,
) -> TranslationExport:
    """Write the (moving-average) generator of `checkpoint` as the next version of `name`, if parity holds."""
    check_publishable(repository, name, version, model_config, NEW_CONFIG)
    loaded = load_translator(checkpoint, direction)
    with staged_version(repository, name) as staging:
        signature = write_translator_onnx(loaded, staging / MODEL_FILE)
        sizes = parity_sizes(signature)
        parity = translation_parity(loaded, staging / MODEL_FILE, sizes, tolerance, parity_batch)
        write_json(
            staging / "export.json",
            {
                "checkpoint": str(checkpoint),
                "step": loaded.step,
                "direction": direction,
                "ema": loaded.ema,
                "config_digest": signature.config_digest,
                "opset": OPSET,
                "torch": torch.__version__,
                "parity": {
                    "sizes": [list(size) for size in sizes],
                    "samples": parity.samples,
                    "max_abs_error": parity.max_abs_error,
                    "tolerance": tolerance,
                },
            },
        )
        chosen, folder = publish_version(staging, version, model_config, NEW_CONFIG)
    return TranslationExport(name, chosen, folder / MODEL_FILE, parity, signature, sizes)


def signature_of(loaded: LoadedTranslator, dynamic_size: bool = True) -> TranslatorSignature:
    config = loaded.config
    source_domain, target_domain = config.domains if loaded.direction == "a2b" else config.domains[::-1]
    task = config.task if config.is_paired else f"{source_domain}-to-{target_domain}"
    side = config.input_size
    return TranslatorSignature(
        task=task,
        architecture=config.architecture,
        input_format=config.input_format,
        output_channels=config.output_channels,
        scale=config.scale,
        size_multiple=config.size_multiple,
        train_size=(side, side),
        value_range=VALUE_RANGE,
        config_digest=loaded.config_digest,
        dynamic_size=dynamic_size,
    )


def write_translator_onnx(loaded: LoadedTranslator, path: Path) -> TranslatorSignature:
    """Export with dynamic batch, height and width; returns the signature written into the metadata."""
    signature = signature_of(loaded)
    multiple = signature.size_multiple
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    height = multiple * torch.export.Dim("h_blocks", min=1, max=MAX_SIDE // multiple)
    width = multiple * torch.export.Dim("w_blocks", min=1, max=MAX_SIDE // multiple)
    example = (example_sources(signature, 2, signature.train_size, seed=0),)
    dynamic = {SOURCE_INPUT: {0: batch, 2: height, 3: width}}
    module = InRange(loaded.generator.eval())
    write_program(module, example, [SOURCE_INPUT], [IMAGE_OUTPUT], dynamic, signature.to_metadata(), path)
    return signature


def example_sources(signature: TranslatorSignature, count: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """(count, C_in, H, W) float32: uniform in [-1, 1], and for rgb+mask a {0, 1} mask with one hole."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    image_channels = 3 if signature.input_format == "rgb+mask" else signature.input_channels
    images = torch.rand(count, image_channels, height, width, generator=generator) * 2 - 1
    if signature.input_format != "rgb+mask":
        return images
    mask = random_holes(count, max(height, width), 0.25, 0.5, generator)[..., :height, :width]
    return torch.cat([images * mask, mask], dim=1)


def parity_sizes(signature: TranslatorSignature) -> list[tuple[int, int]]:
    """The training size and a second allowed one, taller and wider (and not square)."""
    height, width = signature.train_size
    multiple = signature.size_multiple
    return [(height, width), (height + multiple, width + 2 * multiple)]


def translation_parity(
    loaded: LoadedTranslator,
    path: Path,
    sizes: list[tuple[int, int]],
    tolerance: float = DEFAULT_TOLERANCE,
    batch: int = PARITY_BATCH,
) -> ParityReport:
    """onnxruntime against PyTorch on the same `batch` random sources at each size; ParityError beyond `tolerance`."""
    signature = signature_of(loaded)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    error = 0.0
    for index, size in enumerate(sizes):
        sources = example_sources(signature, batch, size, seed=index + 1)
        with torch.no_grad():
            expected = loaded.generator.eval()(sources).numpy()
        (actual,) = session.run([IMAGE_OUTPUT], {SOURCE_INPUT: sources.numpy()})
        if actual.shape != expected.shape:
            raise ParityError(
                f"at input size {size}: onnxruntime output shape {actual.shape} != PyTorch {expected.shape}"
            )
        error = max(error, float(np.max(np.abs(actual - expected))))
        if not error <= tolerance:
            raise ParityError(
                f"at input size {size}: onnxruntime differs from PyTorch by {error:.3g}, tolerance {tolerance:g}; "
                "the export is not trustworthy"
            )
    return ParityReport(samples=batch * len(sizes), max_abs_error=error, tolerance=tolerance)
