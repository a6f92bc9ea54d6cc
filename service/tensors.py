"""Tensor descriptions shared by the runtime and the V2 API: names, dtypes, shapes.

The V2 protocol names data types with strings ("FP32", "INT64"); onnxruntime with
"tensor(float)"; numpy with dtypes. This module converts between the three.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# V2 datatype -> numpy dtype (little-endian, as raw tensor bytes are on the wire)
V2_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("bool"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model; -1 marks a variable axis (the batch axis among them)."""

    name: str
    datatype: str  # a V2 datatype name
    shape: tuple[int, ...]

    @functools.cached_property
    def dtype(self) -> np.dtype:
        return V2_DTYPES[self.datatype]

    @functools.cached_property
    def floating(self) -> bool:
        return self.dtype.kind == "f"

    @functools.cached_property
    def _only_leading_variable(self) -> bool:
        return self.batched and all(dim >= 0 for dim in self.shape[1:])

    def fits(self, shape: tuple[int, ...]) -> bool:
        """Whether a tensor of `shape` can be this one: as many axes, none negative, the fixed ones equal."""
        if len(shape) != len(self.shape):
            return False
        if self._only_leading_variable:
            return shape[0] >= 0 and shape[1:] == self.shape[1:]
        return self.misfit_axis(shape) is None

    def misfit_axis(self, shape: tuple[int, ...]) -> int | None:
        """The first axis of `shape` (as many axes as this one) that is negative or differs from a fixed one."""
        for axis, (dim, expected) in enumerate(zip(shape, self.shape, strict=True)):
            if dim < 0 or (expected >= 0 and dim != expected):
                return axis
        return None

    @property
    def batched(self) -> bool:
        """Whether the leading axis is variable, so requests can be merged along it."""
        return len(self.shape) >= 1 and self.shape[0] == -1

    def describe(self) -> str:
        return f"{self.name} {self.datatype}{list(self.shape)}"


def v2_datatype(ort_type: str) -> str | None:
    """The V2 datatype of an onnxruntime type string, or None if the service cannot carry it."""
    return _ORT_TYPES.get(ort_type)


def spec_from_ort(name: str, ort_type: str, shape: list[object]) -> TensorSpec | None:
    datatype = v2_datatype(ort_type)
    if datatype is None:
        return None
    dims = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in shape)
    return TensorSpec(name=name, datatype=datatype, shape=dims)
