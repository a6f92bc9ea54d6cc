"""Generator outputs back to typed columns, with numpy alone (so a server without torch can run it).

The layout is plain JSON-able metadata written by `transform.TableTransformer.layout()`:
one entry per column, in order, each naming the slice of the generator's output it owns.

- continuous / integer: `alpha` (1 value in [-1, 1]) then `modes` (one logit per mixture
  component); the value is mean[k] + alpha * 4 * std[k] for the arg-max component k, clipped to
  the range seen in training, rounded for integers; with `missing`, 2 more logits (present, missing).
- categorical / boolean: one logit per category (the last one is "missing" when the column has gaps).
"""

from __future__ import annotations

from typing import Any

import numpy as np

ALPHA_SCALE = 4.0  # a component's values are normalised by 4 standard deviations (as in CTGAN)

Layout = list[dict[str, Any]]


def output_width(layout: Layout) -> int:
    return sum(int(column["width"]) for column in layout)


def decode(matrix: np.ndarray, layout: Layout) -> dict[str, np.ndarray]:
    """(N, width) generator outputs -> {column name: (N,) values}: float64 for continuous, int64 for
    integer (float64 with NaN where values are missing), object arrays of the categories otherwise."""
    if matrix.ndim != 2 or matrix.shape[1] != output_width(layout):
        raise ValueError(f"generator output: expected (N, {output_width(layout)}), got {matrix.shape}")
    columns: dict[str, np.ndarray] = {}
    start = 0
    for column in layout:
        block = matrix[:, start : start + int(column["width"])]
        start += int(column["width"])
        if column["kind"] in ("continuous", "integer"):
            columns[column["name"]] = _decode_number(block, column)
        else:
            columns[column["name"]] = _decode_category(block, column)
    return columns


def _decode_number(block: np.ndarray, column: dict[str, Any]) -> np.ndarray:
    means, stds = np.asarray(column["means"]), np.asarray(column["stds"])
    modes = len(means)
    mode = block[:, 1 : 1 + modes].argmax(axis=1)
    alpha = np.clip(block[:, 0], -1.0, 1.0)
    values = means[mode] + alpha * ALPHA_SCALE * stds[mode]
    values = np.clip(values, column["min"], column["max"])
    if column["kind"] == "integer":
        values = np.round(values)
    if column["missing"]:
        missing = block[:, 1 + modes : 3 + modes].argmax(axis=1) == 1
        values = np.where(missing, np.nan, values)
    elif column["kind"] == "integer":
        return values.astype(np.int64)
    return values.astype(np.float64)


def _decode_category(block: np.ndarray, column: dict[str, Any]) -> np.ndarray:
    categories = np.asarray(list(column["categories"]) + ([None] if column["missing"] else []), dtype=object)
    return categories[block.argmax(axis=1)]
