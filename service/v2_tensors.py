"""V2 (Open Inference Protocol) tensors <-> numpy arrays, checked against a model's inputs.

Every problem raises InvalidInput with a message naming the tensor and the field, so a
client sees exactly which part of its ModelInferRequest to fix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from inference import grpc_service_pb2 as v2
from service.errors import InvalidInput
from service.runtime import Runtime
from service.signature import LABEL_INPUT
from service.tensors import TensorSpec
from service.translator_signature import SOURCE_INPUT

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
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents: {len(raw)} buffers for {len(request.inputs)} inputs; send one buffer per input, "
            "in the order of `inputs`"
        )
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        spec = runtime.input(tensor.name)
        where = f"inputs[{index}] ({tensor.name!r})"
        if spec is None:
            expected = ", ".join(s.describe() for s in runtime.inputs)
            raise InvalidInput(f"{where}.name: not an input of this model; its inputs: {expected}")
        if tensor.name in arrays:
            raise InvalidInput(f"{where}.name: the input is given twice")
        shape = _check_shape(where, tensor.shape, spec)
        _check_image_size(where, shape, spec, runtime, max_pixels)
        array = _from_raw(where, raw[index], shape, spec) if raw else _from_contents(where, tensor, shape, spec)
        _check_values(where, array, spec, runtime)
        arrays[tensor.name] = array
    missing = [spec.describe() for spec in runtime.inputs if spec.name not in arrays]
    if missing:
        raise InvalidInput(f"inputs: missing {', '.join(missing)}")
    _check_batch(arrays, runtime, max_samples)
    return arrays


def _check_shape(where: str, shape: Sequence[int], spec: TensorSpec) -> tuple[int, ...]:
    given = tuple(int(dim) for dim in shape)
    if len(given) != len(spec.shape):
        raise InvalidInput(f"{where}.shape: {list(given)} has {len(given)} axes; the model expects {list(spec.shape)}")
    for axis, (dim, expected) in enumerate(zip(given, spec.shape, strict=True)):
        if dim < 0 or (expected >= 0 and dim != expected):
            raise InvalidInput(f"{where}.shape[{axis}]: {dim} does not fit the model's shape {list(spec.shape)}")
    return given


def _check_image_size(
    where: str, shape: tuple[int, ...], spec: TensorSpec, runtime: Runtime, max_pixels: int | None
) -> None:
    """A translator's source: height and width it can run (multiples of size_multiple, or train_size)."""
    translator = runtime.translator
    if translator is None or spec.name != SOURCE_INPUT or len(shape) != 4:
        return
    out_height, out_width = translator.output_size(shape[2], shape[3])
    if max_pixels is not None and out_height * out_width > max_pixels:
        raise InvalidInput(
            f"{where}.shape: {list(shape)}: the output images would be {out_height}x{out_width}, over the limit "
            f"of {max_pixels} pixels (GAN_TRANSLATE_MAX_PIXELS)"
        )
    problem = translator.size_problem(shape[2], shape[3])
    if problem is not None:
        raise InvalidInput(
            f"{where}.shape: {list(shape)}: the image {problem} (through gan.v1 Translate, any size is padded)"
        )


def _from_raw(where: str, buffer: bytes, shape: tuple[int, ...], spec: TensorSpec) -> np.ndarray:
    expected = math.prod(shape) * spec.dtype.itemsize
    if len(buffer) != expected:
        raise InvalidInput(
            f"{where}: raw_input_contents holds {len(buffer)} bytes; shape {list(shape)} of {spec.datatype} "
            f"needs {expected}"
        )
    return np.frombuffer(buffer, dtype=spec.dtype).reshape(shape)


def _from_contents(where: str, tensor: Any, shape: tuple[int, ...], spec: TensorSpec) -> np.ndarray:
    field = CONTENTS_FIELD.get(spec.datatype)
    if field is None:
        raise InvalidInput(f"{where}.contents: {spec.datatype} travels only as raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != math.prod(shape):
        raise InvalidInput(
            f"{where}.contents.{field}: {len(values)} values; shape {list(shape)} needs {math.prod(shape)}"
        )
    try:
        return np.asarray(values, dtype=spec.dtype).reshape(shape)
    except OverflowError:
        raise InvalidInput(f"{where}.contents.{field}: a value does not fit {spec.datatype}") from None


def _check_values(where: str, array: np.ndarray, spec: TensorSpec, runtime: Runtime) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array.ravel()))[0])
        raise InvalidInput(f"{where}: value {bad} is not finite; inputs must be finite numbers")
    signature = runtime.signature
    if signature is not None and spec.name == LABEL_INPUT and array.size:
        classes = len(signature.class_names)
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= classes:
            raise InvalidInput(
                f"{where}: label {low if low < 0 else high} is outside the model's classes 0..{classes - 1}"
            )


def _check_batch(arrays: dict[str, np.ndarray], runtime: Runtime, max_samples: int) -> None:
    if not runtime.batched:
        return
    lengths = {name: array.shape[0] for name, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise InvalidInput(f"inputs: the leading (batch) axes differ: {lengths}; they must be equal")
    samples = next(iter(lengths.values()))
    if not 1 <= samples <= max_samples:
        raise InvalidInput(f"inputs: batch of {samples} samples; send between 1 and {max_samples} per request")


def requested_outputs(request: v2.ModelInferRequest, runtime: Runtime) -> list[TensorSpec]:
    """The outputs to return: those named in the request, or all of them."""
    if not request.outputs:
        return list(runtime.outputs)
    chosen = []
    for index, wanted in enumerate(request.outputs):
        spec = runtime.output(wanted.name)
        if spec is None:
            known = ", ".join(s.name for s in runtime.outputs)
            raise InvalidInput(
                f"outputs[{index}].name: {wanted.name!r} is not an output of this model; outputs: {known}"
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
