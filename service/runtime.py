"""onnxruntime sessions: provider choice, the model's tensors, and running one batch.

Any ONNX file is described from its graph (inputs, outputs, dtypes, shapes), so it can be
served through the V2 API; a file exported by gan-export also carries a Signature in its
metadata, which unlocks the gan.v1 conveniences (seeds, labels, images).

The CUDA and TensorRT paths follow onnxruntime's provider documentation. The CUDA path was
run once on an H100 (bench/serve_bench.py, README "GPU"); the tests exercise the CPU fallback.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.errors import ModelLoadError
from service.settings import Settings
from service.signature import IMAGE_OUTPUT, KEY_SCHEMA, LATENT_INPUT, Signature, signature_from_metadata
from service.tabular import CONDITION_INPUT, KEY_TABULAR, LOGITS_OUTPUT, TabularSpec, output_width
from service.tabular import LATENT_INPUT as TABULAR_LATENT
from service.tensors import TensorSpec, spec_from_ort
from service.translator_signature import KEY_TRANSLATOR, SOURCE_INPUT, TranslatorSignature

log = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
ProviderList = list[str | tuple[str, dict[str, Any]]]
# onnxruntime raises its own exception classes, which derive from Exception only
ONNXRUNTIME_ERRORS: tuple[type[Exception], ...] = (
    *(
        member
        for member in vars(ort.capi.onnxruntime_pybind11_state).values()
        if isinstance(member, type) and issubclass(member, Exception)
    ),
    RuntimeError,
    ValueError,
    MemoryError,
    OSError,
)
_GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class ProviderChoice:
    providers: ProviderList
    fallback_reason: str  # why a GPU provider is not among them; empty when none was dropped


def _cuda_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "device_id": settings.cuda_device_id,
        "arena_extend_strategy": settings.cuda_arena_extend_strategy,
        "cudnn_conv_algo_search": settings.cuda_conv_algo_search,
        "do_copy_in_default_stream": True,
    }
    if settings.cuda_mem_limit_gib > 0:
        options["gpu_mem_limit"] = int(settings.cuda_mem_limit_gib * 1024**3)
    return options


def _tensorrt_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {"device_id": settings.cuda_device_id, "trt_fp16_enable": settings.tensorrt_fp16}
    if settings.tensorrt_cache_dir is not None:
        options["trt_engine_cache_enable"] = True
        options["trt_engine_cache_path"] = str(settings.tensorrt_cache_dir)
    return options


def choose_providers(settings: Settings, available: list[str] | None = None) -> ProviderChoice:
    """The providers to ask onnxruntime for, best first; CPU is always the last resort."""
    available = ort.get_available_providers() if available is None else available
    if settings.provider == "cpu":
        return ProviderChoice([CPU], "")
    wanted: ProviderList = []
    if settings.provider == "tensorrt":
        if TENSORRT not in available:
            raise ModelLoadError(
                f"provider=tensorrt but this onnxruntime build offers {available}; "
                "install onnxruntime-gpu with TensorRT libraries or set GAN_PROVIDER=cuda"
            )
        wanted.append((TENSORRT, _tensorrt_options(settings)))
    if CUDA not in available:
        if settings.provider in ("cuda", "tensorrt"):
            raise ModelLoadError(
                f"provider={settings.provider} but this onnxruntime build has no {CUDA} (it offers {available}); "
                "install onnxruntime-gpu or set GAN_PROVIDER=cpu"
            )
        return ProviderChoice([CPU], f"this onnxruntime build has no {CUDA} (it offers {', '.join(available)})")
    _preload_cuda_libraries()
    wanted.append((CUDA, _cuda_options(settings)))
    wanted.append(CPU)
    return ProviderChoice(wanted, "")


@functools.cache  # once per process, not once per model load
def _preload_cuda_libraries() -> None:
    """With CUDA and cuDNN from NVIDIA's pip wheels (onnxruntime-gpu[cuda,cudnn], the GPU image),
    load them before the first session so the CUDA provider finds them; system CUDA needs nothing."""
    if importlib.util.find_spec("nvidia") is not None and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()


def _provider_name(entry: str | tuple[str, dict[str, Any]]) -> str:
    return entry[0] if isinstance(entry, tuple) else entry


class Session:
    """One onnxruntime session: one instance of a model version."""

    def __init__(self, session: ort.InferenceSession, output_names: list[str], io_binding: bool, device_id: int):
        self._session = session
        self._output_names = output_names
        self._io_binding = io_binding
        self._device_id = device_id

    @property
    def provider(self) -> str:
        """The execution provider that actually runs the graph."""
        return str(self._session.get_providers()[0])

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._io_binding:
            return self._run_bound(feeds)
        results = self._session.run(self._output_names, dict(feeds))
        return {name: np.asarray(value) for name, value in zip(self._output_names, results, strict=True)}

    def _run_bound(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """CUDA: copy the inputs in once, let onnxruntime allocate the outputs on the device, copy them out."""
        binding = self._session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name in self._output_names:
            binding.bind_output(name, "cuda", self._device_id)
        self._session.run_with_iobinding(binding)
        results = binding.copy_outputs_to_cpu()
        return {name: np.asarray(value) for name, value in zip(self._output_names, results, strict=True)}


@dataclass
class Runtime:
    """The loaded sessions of one model version and what its graph takes and gives."""

    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    signature: Signature | None  # None: a plain ONNX file, served through the V2 API only
    sessions: list[Session]
    fallback_reason: str
    tabular: TabularSpec | None = None  # a gan-tabular generator: GenerateRows serves it
    translator: TranslatorSignature | None = None  # an image-to-image generator: Translate serves it

    @property
    def provider(self) -> str:
        return self.sessions[0].provider

    @functools.cached_property
    def batched(self) -> bool:
        """Requests can be merged: every input and output has a variable leading axis."""
        return all(spec.batched for spec in (*self.inputs, *self.outputs))

    @functools.cached_property
    def _inputs_by_name(self) -> dict[str, TensorSpec]:
        return {spec.name: spec for spec in self.inputs}

    @functools.cached_property
    def _outputs_by_name(self) -> dict[str, TensorSpec]:
        return {spec.name: spec for spec in self.outputs}

    def input(self, name: str) -> TensorSpec | None:
        return self._inputs_by_name.get(name)

    def output(self, name: str) -> TensorSpec | None:
        return self._outputs_by_name.get(name)


def load_runtime(path: Path, settings: Settings, instances: int = 1, intra_op_threads: int | None = None) -> Runtime:
    """Open `path` `instances` times with the configured providers and describe its tensors."""
    choice = choose_providers(settings)
    threads = session_threads(settings, intra_op_threads, instances)
    sessions = [_open(path, settings, choice, threads) for _ in range(instances)]
    first = sessions[0]
    inputs = _specs(path, "input", [(i.name, i.type, i.shape) for i in first.get_inputs()])
    outputs = _specs(path, "output", [(o.name, o.type, o.shape) for o in first.get_outputs()])
    metadata = first.get_modelmeta().custom_metadata_map
    signature = signature_from_metadata(metadata, str(path)) if KEY_SCHEMA in metadata else None
    if signature is not None:
        _check_generator_io(path, signature, inputs, outputs)
    tabular = TabularSpec.from_metadata(metadata, str(path)) if KEY_TABULAR in metadata else None
    if tabular is not None:
        _check_tabular_io(path, tabular, inputs, outputs)
    translator = TranslatorSignature.from_metadata(metadata, str(path)) if KEY_TRANSLATOR in metadata else None
    if translator is not None:
        _check_translator_io(path, translator, inputs, outputs)
    on_cuda = str(first.get_providers()[0]) == CUDA
    io_binding = on_cuda and settings.cuda_io_binding
    names = [spec.name for spec in outputs]
    runtime = Runtime(
        path=path,
        inputs=inputs,
        outputs=outputs,
        signature=signature,
        sessions=[Session(s, names, io_binding, settings.cuda_device_id) for s in sessions],
        fallback_reason=choice.fallback_reason,
        tabular=tabular,
        translator=translator,
    )
    _log_provider(runtime, choice, settings)
    return runtime


def session_threads(settings: Settings, configured: int | None, instances: int = 1) -> int:
    """Intra-op threads of each session: the model's config.json (`configured`), else
    GAN_INTRA_OP_THREADS, else (either one 0) `default_threads`."""
    threads = settings.intra_op_threads if configured is None else configured
    return threads or default_threads(settings, instances)


LOOP_CORE_FROM = 4  # cores per worker from which the default threads leave one to the event loop


def default_threads(settings: Settings, instances: int) -> int:
    """Threads per session when none are configured: the cores this process may use, shared by the
    workers; from LOOP_CORE_FROM cores a worker up, less one for its event loop; then shared by
    the model's instances; at least one.

    The event loop reads, admits and answers every call. When onnxruntime's threads take every
    core, it gets only a share of one, and under overload refusals wait behind it and calls
    expire unread (docs/operations.md, sizing item 4). On fewer cores a core is too large a
    share to set aside by default (a single-instance model computes up to 40 % slower on 2
    cores with one thread than with two), so there the setting decides. N workers, or N
    instances, do not each start a thread pool of every core and fight over them.
    """
    cores = usable_cores() // settings.workers
    if cores >= LOOP_CORE_FROM:
        cores -= 1
    return max(1, cores // instances)


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")  # cgroup v1: cpu.cfs_quota_us (-1: no limit), cpu.cfs_period_us


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by the CPU quota of the cgroup it
    sees at /sys/fs/cgroup (a container's CPU limit, which the affinity does not show), rounded up."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_cpu_quota()
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def _cgroup_cpu_quota() -> float | None:
    """CPUs' worth of time per period the cgroup allows; None when it sets no limit or there is no
    cgroup file to read (a limit on a parent cgroup, or one outside a cgroup namespace, is not seen)."""
    try:
        if CGROUP_CPU_MAX.exists():
            limit, period = CGROUP_CPU_MAX.read_text().split()[:2]
        else:
            limit = (CGROUP_V1_CPU / "cpu.cfs_quota_us").read_text().strip()
            period = (CGROUP_V1_CPU / "cpu.cfs_period_us").read_text().strip()
        return None if limit in ("max", "-1") else int(limit) / int(period)
    except (OSError, ValueError, ArithmeticError):
        return None


def session_options(settings: Settings, threads: int) -> ort.SessionOptions:
    """The onnxruntime options every session of the service gets (the benchmark's reference too)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = _GRAPH_LEVELS[settings.graph_optimization]
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.intra_op_spinning else "0")
    return options


def _open(path: Path, settings: Settings, choice: ProviderChoice, threads: int) -> ort.InferenceSession:
    options = session_options(settings, threads)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=choice.providers)
    except ONNXRUNTIME_ERRORS as exc:
        raise ModelLoadError(f"{path}: onnxruntime cannot load it: {type(exc).__name__}: {exc}") from None


def _specs(path: Path, kind: str, described: list[tuple[str, str, list[object]]]) -> tuple[TensorSpec, ...]:
    specs = []
    for name, ort_type, shape in described:
        spec = spec_from_ort(name, ort_type, shape)
        if spec is None:
            raise ModelLoadError(f"{path}: {kind} {name!r} has type {ort_type}, which this service cannot carry")
        specs.append(spec)
    return tuple(specs)


def _check_generator_io(
    path: Path, signature: Signature, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> None:
    """A file with gan.* metadata must have the generator's tensors, or gan.v1 would misuse it."""
    names = {spec.name: spec for spec in inputs}
    expected = {LATENT_INPUT, signature.label_input} if signature.conditional else {LATENT_INPUT}
    if set(names) != expected or IMAGE_OUTPUT not in {spec.name for spec in outputs}:
        raise ModelLoadError(
            f"{path}: inputs {sorted(names)} / outputs {sorted(spec.name for spec in outputs)} do not match a "
            f"{'conditional ' if signature.conditional else ''}generator "
            f"(inputs {sorted(expected)}, output {IMAGE_OUTPUT!r})"
        )
    latent = names[LATENT_INPUT]
    if latent.shape[-1] != signature.latent_dim or not latent.batched:
        raise ModelLoadError(
            f"{path}: input {LATENT_INPUT!r} has shape {list(latent.shape)}, "
            f"expected [-1, {signature.latent_dim}] from the metadata's latent_dim"
        )


def _check_translator_io(
    path: Path, signature: TranslatorSignature, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> None:
    """A file with gan.translator metadata must take `source` and give `image` as its signature says."""
    source = next((spec for spec in inputs if spec.name == SOURCE_INPUT), None)
    image = next((spec for spec in outputs if spec.name == IMAGE_OUTPUT), None)
    expected = (
        f"input {SOURCE_INPUT!r} FP32 [-1, {signature.input_channels}, H, W] and output {IMAGE_OUTPUT!r} "
        f"FP32 [-1, {signature.output_channels}, H*{signature.scale}, W*{signature.scale}]"
    )
    if len(inputs) != 1 or source is None or image is None:
        raise ModelLoadError(
            f"{path}: inputs {[spec.describe() for spec in inputs]} / outputs {[spec.describe() for spec in outputs]} "
            f"do not match its {KEY_TRANSLATOR} metadata, which needs {expected}"
        )
    problems = []
    for spec, channels in ((source, signature.input_channels), (image, signature.output_channels)):
        if spec.datatype != "FP32" or len(spec.shape) != 4 or not spec.batched or spec.shape[1] not in (-1, channels):
            problems.append(spec.describe())
    if signature.dynamic_size:
        if any(dim != -1 for dim in source.shape[2:]):
            problems.append(f"{source.describe()} has fixed height and width but dynamic_size is true")
    elif any(dim not in (-1, size) for dim, size in zip(source.shape[2:], signature.train_size, strict=False)):
        problems.append(f"{source.describe()} is not of train_size {list(signature.train_size)}")
    if problems:
        raise ModelLoadError(f"{path}: {'; '.join(problems)} do not match its {KEY_TRANSLATOR} metadata ({expected})")


def _check_tabular_io(
    path: Path, spec: TabularSpec, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> None:
    """A file with gan.tabular metadata must take latent and condition and give logits of the spec's widths."""
    shapes = {tensor.name: tensor.shape for tensor in inputs}
    expected = {TABULAR_LATENT: spec.latent_dim, CONDITION_INPUT: spec.condition_dim}
    logits = next((tensor.shape for tensor in outputs if tensor.name == LOGITS_OUTPUT), None)
    if {name: shape[-1] for name, shape in shapes.items()} != expected or logits is None:
        raise ModelLoadError(
            f"{path}: inputs {shapes} / outputs {[o.name for o in outputs]} do not match its gan.tabular spec "
            f"(inputs {expected} as (name: width), output {LOGITS_OUTPUT!r})"
        )
    if logits[-1] != output_width(spec.layout):
        raise ModelLoadError(
            f"{path}: logits have width {logits[-1]}, the spec's columns need {output_width(spec.layout)}"
        )


def _log_provider(runtime: Runtime, choice: ProviderChoice, settings: Settings) -> None:
    first = _provider_name(choice.providers[0])
    if settings.provider in ("cuda", "tensorrt") and runtime.provider not in (CUDA, TENSORRT):
        raise ModelLoadError(
            f"{runtime.path}: provider={settings.provider} but onnxruntime could not start it "
            "(see its error above: CUDA 13 and cuDNN 9 libraries must be loadable); set GAN_PROVIDER=auto to fall back"
        )
    if runtime.provider != first:
        runtime.fallback_reason = f"onnxruntime could not start {first} (see its error above for the missing library)"
        log.warning("%s: running on %s: %s", runtime.path, runtime.provider, runtime.fallback_reason)
    elif choice.fallback_reason:
        log.info("%s: running on %s because %s", runtime.path, runtime.provider, choice.fallback_reason)
    else:
        log.info("%s: running on %s", runtime.path, runtime.provider)
