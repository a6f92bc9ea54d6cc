"""Export a tabular generator (gan-tabular) to ONNX: latent + condition -> logits, spec in the metadata.

The graph stops at the logits: drawing categories (seeded Gumbel-max) and decoding typed columns
are numpy in service/tabular.py, shared with `gan-tabular sample`, so the service needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from export.model_repository import check_publishable, publish_version, staged_version, write_json
from export.parity import ParityError, ParityReport
from export.to_onnx import MAX_BATCH, OPSET, write_program
from service.layout import MODEL_FILE
from service.tabular import CONDITION_INPUT, LATENT_INPUT, LOGITS_OUTPUT
from training.tabular.synthesizer import Synthesizer, load_synthesizer


class _Logits(torch.nn.Module):
    def __init__(self, synthesizer: Synthesizer) -> None:
        super().__init__()
        self.generator = synthesizer.generator.eval()

    def forward(self, latent: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.generator.logits(latent, condition)


@dataclass(frozen=True)
class TabularExport:
    name: str
    version: int
    path: Path
    parity: ParityReport


def export_tabular(
    model: Path,
    repository: Path,
    name: str,
    version: int | None = None,
    samples: int = 256,
    tolerance: float = 1e-4,
    model_config: dict[str, object] | None = None,
) -> TabularExport:
    """Write `model` (a gan-tabular .pt) as the next version of `name`, only if onnxruntime matches PyTorch."""
    check_publishable(repository, name, version, model_config)
    synthesizer = load_synthesizer(model)
    with staged_version(repository, name) as staging:
        write_onnx(synthesizer, staging / MODEL_FILE)
        parity = tabular_parity(synthesizer, staging / MODEL_FILE, samples, tolerance)
        write_json(staging / "export.json", {"tabular_model": str(model), "opset": OPSET, "torch": torch.__version__})
        chosen, folder = publish_version(staging, version, model_config)
    return TabularExport(name, chosen, folder / MODEL_FILE, parity)


def write_onnx(synthesizer: Synthesizer, path: Path) -> None:
    spec = synthesizer.spec
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    example = (torch.zeros(2, spec.latent_dim), torch.zeros(2, spec.condition_dim))
    dynamic = {LATENT_INPUT: {0: batch}, CONDITION_INPUT: {0: batch}}
    inputs, outputs = [LATENT_INPUT, CONDITION_INPUT], [LOGITS_OUTPUT]
    write_program(_Logits(synthesizer), example, inputs, outputs, dynamic, spec.to_metadata(), path)


def tabular_parity(synthesizer: Synthesizer, path: Path, samples: int, tolerance: float) -> ParityReport:
    spec = synthesizer.spec
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((samples, spec.latent_dim), dtype=np.float32)
    condition = np.zeros((samples, spec.condition_dim), dtype=np.float32)
    if spec.condition_dim:
        condition[np.arange(samples), rng.integers(0, spec.condition_dim, samples)] = 1.0
    expected = synthesizer.logits(latent, condition)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run([LOGITS_OUTPUT], {LATENT_INPUT: latent, CONDITION_INPUT: condition})
    error = float(np.max(np.abs(actual - expected)))
    if not error <= tolerance:
        raise ParityError(f"onnxruntime differs from PyTorch by {error:.3g} on the logits, tolerance {tolerance:g}")
    return ParityReport(samples=samples, max_abs_error=error, tolerance=tolerance)
