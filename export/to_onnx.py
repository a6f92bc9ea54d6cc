"""Convert a trained generator to ONNX: dynamic batch axis, pinned opset, self-describing metadata."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from service.signature import CLASS_WEIGHTS_INPUT, IMAGE_OUTPUT, LATENT_INPUT, Signature
from training.checkpoint import LoadedGenerator
from training.models import Generator

OPSET = 18
VALUE_RANGE = (-1.0, 1.0)  # the generators end in tanh; the graphs clamp to it (in_range)
MAX_BATCH = 65536


class ExportError(RuntimeError):
    """The generator could not be converted; the message says why."""


class _ConditionalWrapper(torch.nn.Module):
    """Takes (N, num_classes) float32 class weights instead of int64 labels, so a client can
    blend classes (one-hot rows give the plain classes)."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, latent: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
        return in_range(self.generator.from_class_weights(latent, class_weights))


class _UnconditionalWrapper(torch.nn.Module):
    """Hides the unused label input so the graph's signature says the model is unconditional."""

    def __init__(self, generator: torch.nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        label = torch.zeros(latent.shape[0], dtype=torch.int64, device=latent.device)
        return in_range(self.generator(latent, label))


class InRange(torch.nn.Module):
    """A translator whose output is clamped to VALUE_RANGE (its input keeps the name `source`)."""

    def __init__(self, generator: torch.nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        return in_range(self.generator(source))


def in_range(images: torch.Tensor) -> torch.Tensor:
    """`images` clamped to VALUE_RANGE. PyTorch's tanh stays inside it, but onnxruntime's approximation
    lands one float step past it where it saturates (-1.0000001), outside what the metadata promises."""
    return images.clamp(*VALUE_RANGE)


def signature_of(loaded: LoadedGenerator) -> Signature:
    return Signature(
        latent_dim=loaded.latent_dim,
        class_names=tuple(loaded.class_names),
        sample_shape=(loaded.channels, loaded.image_size, loaded.image_size),
        value_range=VALUE_RANGE,
        config_digest=loaded.config_digest,
        architecture="conditional-dcgan" if loaded.class_names else "dcgan",
        label_input=CLASS_WEIGHTS_INPUT,
    )


def export_onnx(loaded: LoadedGenerator, path: Path) -> Signature:
    """Write `loaded.generator` as an ONNX model at `path` and return the signature it carries."""
    signature = signature_of(loaded)
    module, example, dynamic = _traceable(loaded)
    write_program(module, example, list(dynamic), [IMAGE_OUTPUT], dynamic, signature.to_metadata(), path)
    return signature


def write_program(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: dict[str, dict[int, Any]],
    metadata: dict[str, str],
    path: Path,
) -> None:
    """Trace `module` with the dynamo exporter at OPSET, stamp `metadata`, check the model and save it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not for our users
        program = torch.onnx.export(
            module,
            example,
            input_names=input_names,
            output_names=output_names,
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    model = program.model_proto
    set_metadata(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))


def _traceable(
    loaded: LoadedGenerator,
) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], dict[str, dict[int, torch.export.Dim]]]:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    latent = torch.zeros(2, loaded.latent_dim)
    generator = loaded.generator.eval()
    if loaded.class_names:
        if not isinstance(generator, Generator):
            raise ExportError(f"a conditional export needs a training.models.Generator, got {type(generator).__name__}")
        weights = torch.zeros(2, len(loaded.class_names))
        weights[:, 0] = 1.0
        dynamic = {LATENT_INPUT: {0: batch}, CLASS_WEIGHTS_INPUT: {0: batch}}
        return _ConditionalWrapper(generator), (latent, weights), dynamic
    return _UnconditionalWrapper(generator), (latent,), {LATENT_INPUT: {0: batch}}


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "gan-serving export"
