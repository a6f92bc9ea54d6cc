"""V2 (Open Inference Protocol) tensors <-> numpy arrays, checked against a model's inputs.

Every problem raises InvalidInput with a message naming the tensor and the field, so a
client sees exactly which part of its ModelInferRequest to fix.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from inference import grpc_service_pb2 as v2
from service.errors import InvalidInput
from service.runtime import Runtime
from service.signature import LABEL_INPUT
from service.tensors import TensorSpec
from service.translator_signature import SOURCE_INPUT, TranslatorSignature

# datatype -> the InferTensorContents field that carries it when not sent raw
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def decode_inputs(
    request: v2.ModelInferRequest, runtime: Runtime, max_samples: int, max_pixels: int | None = None
) -> dict[str, np.ndarray]:
    """The request's input tensors as arrays, checked against the model's inputs; a translator's
    images must also be of a size it runs, with at most `max_pixels` per input and output image."""
    raw = request.raw_input_contents
    tensors = request.inputs
    if raw and len(raw) != len(tensors):
        raise InvalidInput(
            f"raw_input_contents: {len(raw)} buffers for {len(tensors)} inputs; send one buffer per input, "
            "in the order of `inputs`"
        )
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(tensors):
        name = tensor.name
        spec = runtime.input(name)
        if spec is None or name in arrays:
            raise _name_error(_where(index, name), spec, runtime)
        _check_encoding(_where(index, name), tensor, spec, bool(raw))
        shape = tuple(tensor.shape)
        if not spec.fits(shape):
            _check_shape(_where(index, name), shape, spec)
        if runtime.translator is not None:
            _check_image_size(_where(index, name), shape, spec, runtime, max_pixels)
        array = _from_raw(index, raw[index], shape, spec) if raw else _from_contents(index, tensor, shape, spec)
        _check_values(index, array, spec, runtime)
        arrays[name] = array
    if len(arrays) != len(runtime.inputs):
        missing = [spec.describe() for spec in runtime.inputs if spec.name not in arrays]
        raise InvalidInput(f"inputs: missing {', '.join(missing)}")
    _check_batch(arrays, runtime, max_samples)
    return arrays


def _where(index: int, name: str) -> str:
    """How messages name an input tensor of the request."""
    return f"inputs[{index}] ({name!r})"


def _name_error(where: str, spec: TensorSpec | None, runtime: Runtime) -> InvalidInput:
    if spec is None:
        expected = ", ".join(s.describe() for s in runtime.inputs)
        return InvalidInput(f"{where}.name: not an input of this model; its inputs: {expected}")
    return InvalidInput(f"{where}.name: the input is given twice")


def _check_encoding(where: str, tensor: Any, spec: TensorSpec, raw: bool) -> None:
    """The tensor's datatype is the model's (same-width types would be misread, not refused), and
    its values come one way: raw buffers for every input, or typed contents."""
    _refuse_shared_memory(where, tensor.parameters)
    if tensor.datatype != spec.datatype:
        raise InvalidInput(f"{where}.datatype: {tensor.datatype!r}; the model expects {spec.datatype}")
    if raw and tensor.HasField("contents"):
        raise InvalidInput(
            f"{where}.contents: given together with raw_input_contents; send raw buffers for every input "
            "or typed contents for every input"
        )


def _refuse_shared_memory(where: str, parameters: Any) -> None:
    for key in parameters:
        if key.startswith("shared_memory_"):
            raise InvalidInput(
                f"{where}.parameters[{key!r}]: shared memory is not supported; tensors travel in the messages "
                "(raw buffers or typed contents)"
            )


def _check_shape(where: str, shape: tuple[int, ...], spec: TensorSpec) -> None:
    """Raise, naming the axis, when `shape` does not fit the model's shape for the input."""
    if len(shape) != len(spec.shape):
        raise InvalidInput(f"{where}.shape: {list(shape)} has {len(shape)} axes; the model expects {list(spec.shape)}")
    axis = spec.misfit_axis(shape)
    if axis is not None:
        raise InvalidInput(f"{where}.shape[{axis}]: {shape[axis]} does not fit the model's shape {list(spec.shape)}")


def _check_image_size(
    where: str, shape: tuple[int, ...], spec: TensorSpec, runtime: Runtime, max_pixels: int | None
) -> None:
    """A translator's source: height and width it can run (multiples of size_multiple, or train_size)."""
    translator = runtime.translator
    if translator is None or spec.name != SOURCE_INPUT or len(shape) != 4:
        return
    out_height, out_width = translator.output_size(shape[2], shape[3])
    if max_pixels is not None and max(shape[0], 1) * out_height * out_width > max_pixels:
        raise InvalidInput(
            f"{where}.shape: {list(shape)}: the {shape[0]} output images would be {out_height}x{out_width}, over "
            f"the limit of {max_pixels} pixels per request (GAN_TRANSLATE_MAX_PIXELS)"
        )
    problem = translator.size_problem(shape[2], shape[3])
    if problem is not None:
        raise InvalidInput(
            f"{where}.shape: {list(shape)}: the image {problem} (through gan.v1 Translate, any size is padded)"
        )


def _from_raw(index: int, buffer: bytes, shape: tuple[int, ...], spec: TensorSpec) -> np.ndarray:
    expected = math.prod(shape) * spec.dtype.itemsize
    if len(buffer) != expected:
        raise InvalidInput(
            f"{_where(index, spec.name)}: raw_input_contents holds {len(buffer)} bytes; shape {list(shape)} "
            f"of {spec.datatype} needs {expected}"
        )
    return np.ndarray(shape, spec.dtype, buffer)  # read-only, over the message's bytes


def _from_contents(index: int, tensor: Any, shape: tuple[int, ...], spec: TensorSpec) -> np.ndarray:
    where = _where(index, spec.name)
    field = CONTENTS_FIELD.get(spec.datatype)
    if field is None:
        raise InvalidInput(f"{where}.contents: {spec.datatype} travels only as raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != math.prod(shape):
        raise InvalidInput(
            f"{where}.contents.{field}: {len(values)} values; shape {list(shape)} needs {math.prod(shape)}"
        )
    if spec.dtype.kind in "iu" and spec.dtype.itemsize < 8:  # carried in 32-bit fields: may not fit
        wide = np.asarray(values, dtype=np.int64)
        limits = np.iinfo(spec.dtype)
        if wide.size and (wide.min() < limits.min or wide.max() > limits.max):
            bad = int(wide[(wide < limits.min) | (wide > limits.max)][0])
            raise InvalidInput(
                f"{where}.contents.{field}: {bad} does not fit {spec.datatype} ({limits.min}..{limits.max})"
            )
        return wide.astype(spec.dtype).reshape(shape)
    return np.asarray(values, dtype=spec.dtype).reshape(shape)


def _check_values(index: int, array: np.ndarray, spec: TensorSpec, runtime: Runtime) -> None:
    if spec.floating and not _all_finite(array):
        bad = int(np.flatnonzero(~np.isfinite(array.ravel()))[0])
        raise InvalidInput(f"{_where(index, spec.name)}: value {bad} is not finite; inputs must be finite numbers")
    signature = runtime.signature
    if spec.name == LABEL_INPUT and signature is not None and array.size:
        classes = len(signature.class_names)
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= classes:
            bad = low if low < 0 else high
            raise InvalidInput(
                f"{_where(index, spec.name)}: label {bad} is outside the model's classes 0..{classes - 1}"
            )
    if spec.name == SOURCE_INPUT and runtime.translator is not None and array.ndim == 4:
        _check_source(_where(index, spec.name), array, runtime.translator)


def _check_source(where: str, array: np.ndarray, translator: TranslatorSignature) -> None:
    """A translator's source holds colours in its value range and, for inpainting, a mask of 0 and 1
    (gan.v1 Translate thresholds a mask; raw tensors must already be one)."""
    colours = array[:, :3] if translator.input_format == "rgb+mask" else array
    low, high = translator.value_range
    tolerance = 1e-3 * (high - low)
    if colours.size and (colours.min() < low - tolerance or colours.max() > high + tolerance):
        bad = float(colours.min() if colours.min() < low - tolerance else colours.max())
        raise InvalidInput(f"{where}: colour value {bad:g} is outside the model's value range [{low:g}, {high:g}]")
    if translator.input_format == "rgb+mask":
        mask = array[:, 3]
        if not np.isin(mask, (0.0, 1.0)).all():
            bad = float(mask[~np.isin(mask, (0.0, 1.0))][0])
            raise InvalidInput(f"{where}: mask value {bad:g} in channel 3; the mask is 1 (known) or 0 (to fill)")


def _all_finite(array: np.ndarray) -> bool:
    """Whether every value is finite. The sum of squares (one BLAS call) is finite when they all
    are, unless it overflows; only then, or when it is not, are the values checked one by one."""
    return math.isfinite(np.vdot(array, array)) or bool(np.isfinite(array).all())


def _check_batch(arrays: dict[str, np.ndarray], runtime: Runtime, max_samples: int) -> None:
    if not runtime.batched:
        return
    lengths = [array.shape[0] for array in arrays.values()]
    samples = lengths[0]
    if lengths.count(samples) != len(lengths):
        differ = {name: array.shape[0] for name, array in arrays.items()}
        raise InvalidInput(f"inputs: the leading (batch) axes differ: {differ}; they must be equal")
    if not 1 <= samples <= max_samples:
        raise InvalidInput(f"inputs: batch of {samples} samples; send between 1 and {max_samples} per request")


def requested_outputs(request: v2.ModelInferRequest, runtime: Runtime) -> list[TensorSpec]:
    """The outputs to return: those named in the request, or all of them."""
    if not request.outputs:
        return list(runtime.outputs)
    chosen: list[TensorSpec] = []
    for index, wanted in enumerate(request.outputs):
        spec = runtime.output(wanted.name)
        if spec is None:
            known = ", ".join(s.name for s in runtime.outputs)
            raise InvalidInput(
                f"outputs[{index}].name: {wanted.name!r} is not an output of this model; outputs: {known}"
            )
        _refuse_shared_memory(f"outputs[{index}]", wanted.parameters)
        if spec in chosen:
            raise InvalidInput(f"outputs[{index}].name: {wanted.name!r} is requested twice; name each output once")
        if "classification" in wanted.parameters:
            raise InvalidInput(
                f"outputs[{index}].parameters['classification']: not supported; a generator's outputs are "
                "samples, not class scores; leave it out to get the whole tensor"
            )
        chosen.append(spec)
    return chosen


def encode_outputs(
    reply: v2.ModelInferResponse, outputs: dict[str, np.ndarray], specs: list[TensorSpec], raw: bool
) -> None:
    """Fill `reply` with the outputs, as raw little-endian buffers or typed contents."""
    raw = raw or any(spec.datatype not in CONTENTS_FIELD for spec in specs)  # raw buffers are all or none
    for spec in specs:
        array = outputs[spec.name]
        tensor = reply.outputs.add(name=spec.name, datatype=spec.datatype, shape=array.shape)
        if raw:
            reply.raw_output_contents.append(np.ascontiguousarray(array, dtype=spec.dtype).tobytes())
        else:
            getattr(tensor.contents, CONTENTS_FIELD[spec.datatype]).extend(array.ravel().tolist())


def parameter_int(parameters: Any, key: str) -> int | None:
    """An integer request parameter (int64 or uint64), or None when absent."""
    if key not in parameters:
        return None
    parameter = parameters[key]
    choice = parameter.WhichOneof("parameter_choice")
    if choice not in ("int64_param", "uint64_param"):
        raise InvalidInput(f"parameters[{key!r}]: must be an integer, got {choice}")
    return int(getattr(parameter, choice))
