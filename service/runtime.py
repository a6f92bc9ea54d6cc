"""onnxruntime sessions: provider choice, signature checks, and running one batch."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.errors import ModelLoadError
from service.settings import Settings
from service.signature import IMAGE_OUTPUT, LABEL_INPUT, LATENT_INPUT, Signature, signature_from_metadata

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def requested_providers(settings: Settings) -> list[str | tuple[str, dict[str, Any]]]:
    """The providers to ask onnxruntime for, best first; CPU is always the last resort."""
    cpu: list[str | tuple[str, dict[str, Any]]] = [CPU]
    if settings.provider == "cpu":
        return cpu
    if CUDA not in ort.get_available_providers():
        if settings.provider == "cuda":
            raise ModelLoadError(
                "provider=cuda but this onnxruntime build has no CUDAExecutionProvider; "
                "install onnxruntime-gpu or set GAN_PROVIDER=cpu"
            )
        return cpu
    cuda_options = {"device_id": settings.cuda_device_id, "cudnn_conv_algo_search": "HEURISTIC"}
    return [(CUDA, cuda_options), *cpu]


@dataclass
class Runtime:
    """One onnxruntime session of one generator version."""

    session: ort.InferenceSession
    signature: Signature
    path: Path

    @property
    def provider(self) -> str:
        """The execution provider that actually runs the graph."""
        return str(self.session.get_providers()[0])

    def run(self, latent: np.ndarray, label: np.ndarray | None) -> np.ndarray:
        """(N, latent_dim) float32 [+ (N,) int64] -> (N, C, H, W) float32."""
        feeds: dict[str, np.ndarray] = {LATENT_INPUT: latent}
        if self.signature.conditional:
            assert label is not None, "a conditional generator needs labels"
            feeds[LABEL_INPUT] = label
        (images,) = self.session.run([IMAGE_OUTPUT], feeds)
        return np.asarray(images)


def load_runtime(path: Path, settings: Settings) -> Runtime:
    """Open `path` with the configured providers and check it is a generator we can serve."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    wanted = requested_providers(settings)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=wanted)
    except (ort.capi.onnxruntime_pybind11_state.Fail, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"{path}: onnxruntime cannot load it: {exc}") from None
    signature = signature_from_metadata(session.get_modelmeta().custom_metadata_map, str(path))
    _check_io(session, signature, path)
    runtime = Runtime(session=session, signature=signature, path=path)
    _log_provider(runtime, wanted, settings)
    return runtime


def _check_io(session: ort.InferenceSession, signature: Signature, path: Path) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    expected = {LATENT_INPUT, LABEL_INPUT} if signature.conditional else {LATENT_INPUT}
    if set(inputs) != expected or IMAGE_OUTPUT not in outputs:
        raise ModelLoadError(
            f"{path}: inputs {sorted(inputs)} / outputs {sorted(outputs)} do not match a "
            f"{'conditional ' if signature.conditional else ''}generator "
            f"(inputs {sorted(expected)}, output {IMAGE_OUTPUT!r})"
        )
    latent_shape = inputs[LATENT_INPUT].shape
    if latent_shape[-1] != signature.latent_dim:
        raise ModelLoadError(
            f"{path}: input {LATENT_INPUT!r} has shape {latent_shape}, metadata says latent_dim {signature.latent_dim}"
        )


def _log_provider(runtime: Runtime, wanted: list[Any], settings: Settings) -> None:
    first = wanted[0][0] if isinstance(wanted[0], tuple) else wanted[0]
    if settings.provider == "cuda" and runtime.provider != CUDA:
        raise ModelLoadError(
            f"{runtime.path}: provider=cuda but onnxruntime could not start CUDAExecutionProvider "
            "(see its error above: CUDA 13 and cuDNN 9 libraries must be loadable); set GAN_PROVIDER=auto to fall back"
        )
    if runtime.provider != first:
        log.warning(
            "%s: asked for %s but onnxruntime runs it on %s (see the onnxruntime error above for the missing library)",
            runtime.path,
            first,
            runtime.provider,
        )
    elif settings.provider == "auto" and runtime.provider == CPU:
        log.info("%s: running on %s (no CUDA available to onnxruntime)", runtime.path, CPU)
    else:
        log.info("%s: running on %s", runtime.path, runtime.provider)
