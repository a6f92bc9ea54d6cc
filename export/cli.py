"""`gan-export CHECKPOINT --repository models --name digits`: ONNX export, parity check, publish."""

from __future__ import annotations

import argparse
import pickle
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from export.model_repository import (
    RepositoryError,
    check_name,
    check_publishable,
    publish_version,
    staged_version,
    write_json,
)
from export.parity import DEFAULT_SAMPLES, DEFAULT_TOLERANCE, ParityError, ParityReport, check_parity
from export.to_onnx import OPSET, ExportError, export_onnx
from export.translation import PARITY_BATCH
from service.layout import MODEL_FILE
from training.checkpoint import CheckpointError, load_generator
from training.translation.checkpoint import is_translation_checkpoint


class Published(Protocol):
    """What every kind of export reports."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def path(self) -> Path: ...
    @property
    def parity(self) -> ParityReport: ...


@dataclass(frozen=True)
class ExportResult:
    name: str
    version: int
    path: Path
    parity: ParityReport


def export_checkpoint(
    checkpoint: Path,
    repository: Path,
    name: str,
    version: int | None = None,
    parity_samples: int = DEFAULT_SAMPLES,
    tolerance: float = DEFAULT_TOLERANCE,
    model_config: dict[str, object] | None = None,
) -> ExportResult:
    """Export the generator of `checkpoint` as a new version of `name`, only if parity holds."""
    check_publishable(repository, name, version, model_config)
    loaded = load_generator(checkpoint)
    if loaded.config.data.is_points:
        raise CheckpointError(
            f"{checkpoint}: a {loaded.config.data.source} point generator is for `gan-eval modes`; "
            "the service serves image generators, so it is not exported"
        )
    with staged_version(repository, name) as staging:
        signature = export_onnx(loaded, staging / MODEL_FILE)
        parity = check_parity(loaded, staging / MODEL_FILE, samples=parity_samples, tolerance=tolerance)
        write_json(
            staging / "export.json",
            {
                "checkpoint": str(checkpoint),
                "step": loaded.step,
                "config_digest": signature.config_digest,
                "opset": OPSET,
                "torch": torch.__version__,
                "parity": {"samples": parity.samples, "max_abs_error": parity.max_abs_error, "tolerance": tolerance},
            },
        )
        chosen, folder = publish_version(staging, version, model_config)
    return ExportResult(name=name, version=chosen, path=folder / MODEL_FILE, parity=parity)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gan-export",
        description="Convert a training checkpoint's generator to ONNX, check it against PyTorch, "
        "and publish it as a new version in a model repository.",
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint.pt written by gan-train or gan-translate")
    parser.add_argument("--repository", type=Path, default=Path("models"), help="model repository (models)")
    parser.add_argument("--name", required=True, help="model name, e.g. digits")
    parser.add_argument("--version", type=int, help="version number (default: newest + 1)")
    parser.add_argument(
        "--parity-samples",
        type=int,
        help=f"random inputs on which onnxruntime must match PyTorch (default {DEFAULT_SAMPLES}); "
        f"for a translator, images at each of the two sizes checked (default {PARITY_BATCH})",
    )
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max abs error allowed")
    parser.add_argument(
        "--max-batch-size",
        type=int,
        help="written to the model's config.json (a translator's new config.json gets 16); checked before exporting",
    )
    parser.add_argument(
        "--direction",
        choices=["a2b", "b2a"],
        default="a2b",
        help="gan-translate CycleGAN checkpoints: which of the two generators (default a2b)",
    )
    parser.add_argument("--max-queue-delay-ms", type=float, help="written to the model's config.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.parity_samples is not None and args.parity_samples < 1:
        print("gan-export: error: --parity-samples must be at least 1", file=sys.stderr)
        return 2
    try:
        result = publish(args)
    except (CheckpointError, RepositoryError) as exc:
        print(f"gan-export: error: {exc}", file=sys.stderr)
        return 2
    except (ParityError, ExportError) as exc:
        print(f"gan-export: error: {exc}", file=sys.stderr)
        return 1
    parity = result.parity
    print(
        f"gan-export: published {result.name} version {result.version} at {result.path} "
        f"(parity: max abs error {parity.max_abs_error:.2e} over {parity.samples} samples, "
        f"tolerance {parity.tolerance:g})"
    )
    return 0


def publish(args: argparse.Namespace) -> Published:
    """Export the checkpoint as whichever kind it is: a tabular model, a translator or a generator."""
    model_config = {"max_batch_size": args.max_batch_size, "max_queue_delay_ms": args.max_queue_delay_ms}
    samples = args.parity_samples or DEFAULT_SAMPLES
    if is_tabular(args.checkpoint):
        from export.tabular import export_tabular

        return export_tabular(
            args.checkpoint,
            args.repository,
            check_name(args.name),
            version=args.version,
            samples=samples,
            tolerance=args.tolerance,
            model_config=model_config,
        )
    if is_translation_checkpoint(args.checkpoint):
        from export.translation import export_translation

        return export_translation(
            args.checkpoint,
            args.repository,
            check_name(args.name),
            version=args.version,
            direction=args.direction,
            tolerance=args.tolerance,
            model_config=model_config,
            parity_batch=args.parity_samples or PARITY_BATCH,
        )
    return export_checkpoint(
        args.checkpoint,
        args.repository,
        args.name,
        version=args.version,
        parity_samples=samples,
        tolerance=args.tolerance,
        model_config=model_config,
    )


def is_tabular(path: Path) -> bool:
    """A gan-tabular model rather than a gan-train checkpoint (its format marker says so)."""
    from training.tabular.synthesizer import FORMAT

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile):
        return False  # unreadable: export_checkpoint reports it with the checkpoint's own message
    return isinstance(state, dict) and state.get("format") == FORMAT


if __name__ == "__main__":
    sys.exit(main())
